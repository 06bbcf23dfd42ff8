package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/runway-cd/runway/internal/atomicfile"
)

// formatVersion names what Runway does around a build script: how it
// checks the tree out, where, with which variables and flags. It is part
// of every input key: change it with any of those, so that no artifact
// built the old way is reused for a build done the new way.
const formatVersion = "runway-build-2"

// reproducibleGoFlags are added to GOFLAGS (after the flags of Runway's
// environment; a flag given there is left as it is) so that a Go build's
// output depends on its sources, not on where they were checked out:
// -trimpath strips the checkout's, GOROOT's and the module cache's paths,
// -buildvcs=false the VCS stamp (a checkout has no .git, but Go would
// stamp from a repository holding the store's directory).
var reproducibleGoFlags = []string{"-trimpath", "-buildvcs=false"}

// The input index: inputs/<hex> holds the digest of the artifact built
// from the inputs whose key is sha256:<hex>, written (atomically) only
// once the artifact is in sha256/, and trusted only if the artifact is
// still there with that digest.

// inputKey hashes what a build's output may depend on, as far as Runway
// knows it: the tree of the commit (which holds the app spec, so the
// build scripts), the kind and its script, the app, the script's
// environment but for the directories Runway gives it (where, not what),
// the go command found on its PATH (path, size, mtime: a toolchain
// upgraded in place changes it), Runway's formatVersion and platform.
// What a script fetches or reads beyond that (the network, the clock,
// the build cache) is not an input: a build that depends on it is
// reused all the same.
func inputKey(app string, kind Kind, tree, script string, env []string) string {
	h := sha256.New()
	field := func(name, value string) { fmt.Fprintf(h, "%s\x00%d\x00%s\x00", name, len(value), value) }
	field("format", formatVersion)
	field("platform", runtime.GOOS+"/"+runtime.GOARCH)
	field("app", app)
	field("kind", string(kind))
	field("tree", tree)
	field("script", script)
	sorted := slices.Clone(env)
	slices.Sort(sorted)
	for _, kv := range sorted {
		field("env", kv)
	}
	field("go", goToolchain(env))
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// pathVars are the variables naming directories of the build: stable for
// an app, but never an input.
var pathVars = []string{"HOME", "TMPDIR", "GOCACHE", "GOMODCACHE", "RUNWAY_OUT"}

// keyEnv is env without pathVars.
func keyEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(pathVars, k)
	})
}

// goToolchain identifies the go command a script with env finds first on
// its PATH, or says there is none.
func goToolchain(env []string) string {
	for _, dir := range filepath.SplitList(lookup(env, "PATH")) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p, err := filepath.EvalSymlinks(filepath.Join(dir, "go"))
		if err != nil {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		return fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return "none"
}

// lookup is the value of name in env (the last one, as exec takes it).
func lookup(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// withReproducibleGoFlags appends to goflags each of reproducibleGoFlags
// whose flag it does not set already.
func withReproducibleGoFlags(goflags string) string {
	fields := strings.Fields(goflags)
	for _, add := range reproducibleGoFlags {
		name := flagName(add)
		if !slices.ContainsFunc(fields, func(f string) bool { return flagName(f) == name }) {
			fields = append(fields, add)
		}
	}
	return strings.Join(fields, " ")
}

// flagName is the name of a flag like -x, --x or -x=v.
func flagName(f string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
	return name
}

// indexed returns the digest the input index holds for key, if the
// artifact it names is stored whole: present, and hashing to it. An
// entry that fails that check is removed, so the build that follows
// writes it anew.
func (s *Store) indexed(key string) (string, bool) {
	p := s.indexPath(key)
	b, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.opts.Logger.Warn("build: reading the input index", "key", key, "err", err)
		}
		return "", false
	}
	digest := strings.TrimSpace(string(b))
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if _, err := hex.DecodeString(hexDigest); !ok || err != nil || len(hexDigest) != 2*sha256.Size {
		s.opts.Logger.Warn("build: input index entry is not a digest; building again", "key", key, "entry", digest)
		_ = os.Remove(p)
		return "", false
	}
	got, err := treeDigest(filepath.Join(s.dir, "sha256", hexDigest))
	if err != nil || got != digest {
		s.opts.Logger.Warn("build: the artifact the input index names is gone or changed; building again", "key", key, "digest", digest, "found", got, "err", err)
		_ = os.Remove(p)
		return "", false
	}
	return digest, true
}

// index records that the inputs of key built the artifact digest, which
// must be stored already.
func (s *Store) index(key, digest string) error {
	if err := atomicfile.Write(s.indexPath(key), []byte(digest+"\n"), 0o644); err != nil {
		return fmt.Errorf("indexing artifact by its inputs: %w", err)
	}
	return nil
}

func (s *Store) indexPath(key string) string {
	return filepath.Join(s.dir, "inputs", strings.TrimPrefix(key, "sha256:"))
}
