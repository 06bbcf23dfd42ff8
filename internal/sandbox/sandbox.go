// Package sandbox decides who untrusted app code runs as. Builds, replicas
// and jobs come from app repositories: when Runway runs as root each gets a
// numeric uid of its own from a configured range (gid the same number, no
// supplementary groups, no account needed): one per environment and one per
// app for that app's builds, kept across restarts in an allocation table. So
// an environment's processes can neither read Runway's data dir nor another
// environment's files and processes, and one app's build can change nothing
// another app's build reads. When Runway is not root there is no one to
// switch to: the sandbox is disabled and app code runs as the current user,
// which New says once in the log. Either way app code gets an allow-listed
// environment (Env), never Runway's own variables.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/runway-cd/runway/internal/atomicfile"
)

// buildPrefix starts the keys of build uids. No environment's name (a DNS
// label or a version) holds a ':'.
const buildPrefix = ":build/"

// BuildKey is the key of the uid app's builds run as: one per app, so what
// a build leaves behind (a cache entry, a file in a later build's output)
// can reach only later builds of the same app. Build uids are never
// released.
func BuildKey(app string) string { return buildPrefix + app }

func isBuildKey(key string) bool { return strings.HasPrefix(key, buildPrefix) }

// ErrExhausted is returned when every uid of the range is allocated.
var ErrExhausted = errors.New("no free sandbox uid")

// Options configure a sandbox.
type Options struct {
	// Base and Count are the uid range: Base+1 up to Base+Count-1 go to
	// environments and to each app's builds. Base itself is not handed
	// out: earlier Runways ran every build as Base, and what those builds
	// left behind must not pass to one app.
	Base, Count uint32
	// StateFile keeps the allocation table (0600 JSON), so a restarted
	// Runway gives every environment and every app's builds the uid they
	// had.
	StateFile string
	// Env names variables of Runway's own environment passed on to app
	// code besides the built-in allow-list. RUNWAY_* names are refused.
	Env []string
	// Vars are KEY=value pairs app code gets after the allow-listed ones
	// (an internal GOPROXY, say) without their being in Runway's
	// environment.
	Vars []string
	// Logger gets the one warning of a disabled sandbox; nil:
	// slog.Default().
	Logger *slog.Logger
	// Disabled runs app code as the current user even as root (tests of
	// other packages). Not root implies it.
	Disabled bool
}

// Sandbox hands out uids and environments to app code. A nil *Sandbox is
// valid: disabled, with the built-in allow-list.
type Sandbox struct {
	opts    Options
	enabled bool

	mu    sync.Mutex
	table table
}

// table is the content of the state file.
type table struct {
	// Next is the uid the next environment is offered first. Uids are
	// handed out round-robin, so a released uid is reused only after the
	// whole range: files a torn-down environment left outside its
	// directory (in /tmp, say) do not pass to the next one at once. A new
	// table starts at a random uid of the range, so two Runways sharing a
	// range (which they should not) rarely meet.
	Next uint32            `json:"next"`
	UIDs map[string]uint32 `json:"uids"`
}

// New returns a sandbox allocating from opts' range when this process is
// root, else a disabled one.
func New(opts Options) (*Sandbox, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, n := range opts.Env {
		if strings.HasPrefix(n, "RUNWAY_") || n == "" || strings.ContainsAny(n, "=\x00") {
			return nil, fmt.Errorf("sandbox env %q: only names of non-Runway variables may be passed to app code", n)
		}
	}
	for _, kv := range opts.Vars {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("sandbox var %q is not KEY=value", kv)
		}
	}
	s := &Sandbox{opts: opts, table: table{UIDs: map[string]uint32{}}}
	if opts.Disabled || os.Geteuid() != 0 {
		opts.Logger.Warn("sandbox disabled: builds, replicas and jobs run as the current user, with access to everything it can read",
			"uid", os.Geteuid())
		return s, nil
	}
	if opts.Count < 2 || opts.Base == 0 || opts.Base+opts.Count < opts.Base {
		return nil, fmt.Errorf("sandbox uid range %d+%d: need a non-root base and at least 2 uids", opts.Base, opts.Count)
	}
	if opts.StateFile == "" {
		return nil, errors.New("sandbox: a state file is required")
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.enabled = true
	opts.Logger.Info("sandbox: app code runs as unprivileged uids", "base", opts.Base, "count", opts.Count, "allocated", len(s.table.UIDs))
	return s, nil
}

// Enabled reports whether app code runs as sandbox uids.
func (s *Sandbox) Enabled() bool { return s != nil && s.enabled }

// UID returns key's uid (an environment's name or a BuildKey), allocating
// one for a new key. The allocation is saved before UID returns.
func (s *Sandbox) UID(key string) (uint32, error) {
	if !s.Enabled() {
		return uint32(os.Geteuid()), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if uid, ok := s.table.UIDs[key]; ok {
		return uid, nil
	}
	used := make(map[uint32]bool, len(s.table.UIDs))
	for _, u := range s.table.UIDs {
		used[u] = true
	}
	first, last := s.opts.Base+1, s.opts.Base+s.opts.Count-1
	next := s.table.Next
	if next < first || next > last {
		next = first + rand.Uint32N(last-first+1)
	}
	for range s.opts.Count - 1 {
		// A uid something runs as is someone else's: another Runway's on
		// the same range, or a process a crash left behind.
		if !used[next] && len(Processes(next)) == 0 {
			s.table.UIDs[key] = next
			s.table.Next = next + 1
			if err := s.save(); err != nil {
				delete(s.table.UIDs, key)
				return 0, err
			}
			return next, nil
		}
		if next++; next > last {
			next = first
		}
	}
	return 0, fmt.Errorf("allocating a uid for %s: %w (%d in use)", key, ErrExhausted, len(s.table.UIDs))
}

// Credential is what key's processes run as: nil when the sandbox is
// disabled (the current user).
func (s *Sandbox) Credential(key string) (*syscall.Credential, error) {
	if !s.Enabled() {
		return nil, nil
	}
	uid, err := s.UID(key)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}, nil
}

// Chown hands path (not what a symlink there points to) to key's uid; a
// no-op when the sandbox is disabled.
func (s *Sandbox) Chown(path, key string) error {
	if !s.Enabled() {
		return nil
	}
	uid, err := s.UID(key)
	if err != nil {
		return err
	}
	if err := os.Lchown(path, int(uid), int(uid)); err != nil {
		return fmt.Errorf("handing %s to uid %d: %w", path, uid, err)
	}
	return nil
}

// ChownTree hands path and everything under it to key's uid, never
// following symlinks.
func (s *Sandbox) ChownTree(path, key string) error {
	if !s.Enabled() {
		return nil
	}
	uid, err := s.UID(key)
	if err != nil {
		return err
	}
	err = filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(uid))
	})
	if err != nil {
		return fmt.Errorf("handing %s to uid %d: %w", path, uid, err)
	}
	return nil
}

// Release frees an environment's uid once it is torn down. A build uid is
// kept (a no-op): it owns its app's build cache, and there is one per app.
func (s *Sandbox) Release(key string) error {
	if !s.Enabled() || isBuildKey(key) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	uid, ok := s.table.UIDs[key]
	if !ok {
		return nil
	}
	delete(s.table.UIDs, key)
	if err := s.save(); err != nil {
		s.table.UIDs[key] = uid
		return fmt.Errorf("releasing the uid of %s: %w", key, err)
	}
	return nil
}

// Allocated lists the environments that hold a uid, sorted. Build uids,
// which are never released, are left out.
func (s *Sandbox) Allocated() []string {
	if !s.Enabled() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.table.UIDs))
	for k := range s.table.UIDs {
		if !isBuildKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// KillAll sends SIGKILL to every process running as key's uid until none
// is left or ctx ends: whatever an environment or a build started, however
// it detached itself (new session, scrubbed environment), ends with it. A
// no-op when the sandbox is disabled (that uid is Runway's own) or key has
// no uid yet.
func (s *Sandbox) KillAll(ctx context.Context, key string) error {
	if !s.Enabled() {
		return nil
	}
	s.mu.Lock()
	uid, ok := s.table.UIDs[key]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return killUID(ctx, uid)
}

func (s *Sandbox) load() error {
	b, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading sandbox uids: %w", err)
	}
	var t table
	if err := json.Unmarshal(b, &t); err != nil {
		return fmt.Errorf("decoding sandbox uids %s: %w", s.opts.StateFile, err)
	}
	first, last := s.opts.Base+1, s.opts.Base+s.opts.Count-1
	for k, u := range t.UIDs {
		if u < first || u > last {
			s.opts.Logger.Warn("sandbox: uid outside the configured range dropped; the environment or app's builds get a new one",
				"key", k, "uid", u)
			continue
		}
		s.table.UIDs[k] = u
	}
	s.table.Next = t.Next
	return nil
}

// save writes the table through a temporary file, 0600; the caller holds mu.
func (s *Sandbox) save() error {
	b, err := json.MarshalIndent(s.table, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding sandbox uids: %w", err)
	}
	if err := atomicfile.Write(s.opts.StateFile, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving sandbox uids: %w", err)
	}
	return nil
}
