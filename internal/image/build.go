package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Builder builds and pushes images. It is safe for concurrent use.
type Builder struct {
	opts Options
	base name.Reference // nil: an empty base

	mu   sync.Mutex // guards memo
	memo map[memoKey]*built

	baseMu    sync.Mutex
	baseImage v1.Image // resolved once, so every build has the same base
}

// memoKey is what an image is made of: an artifact dir (immutable), its
// entrypoint and the base.
type memoKey struct {
	dir, entrypoint, base string
}

// built is an image this Builder made, or is making (until done closes).
type built struct {
	done   chan struct{}
	digest v1.Hash
	repo   name.Repository // where it was first pushed
	err    error
}

// New returns a Builder; it fails on an invalid registry or base name.
func New(o Options) (*Builder, error) {
	if o.Registry == "" {
		return nil, errors.New("creating image builder: no registry")
	}
	if strings.HasSuffix(o.Registry, "/") || strings.Contains(o.Registry, "://") {
		return nil, fmt.Errorf("creating image builder: invalid registry %q: want host[:port][/path]", o.Registry)
	}
	if _, err := name.NewRepository(o.Registry+"/app", name.StrictValidation); err != nil {
		return nil, fmt.Errorf("creating image builder: invalid registry %q: %w", o.Registry, err)
	}
	b := &Builder{opts: o, memo: make(map[memoKey]*built)}
	if o.Base != "" {
		base, err := o.parseRef(o.Base)
		if err != nil {
			return nil, fmt.Errorf("creating image builder: base: %w", err)
		}
		b.base = base
	}
	return b, nil
}

// Build makes an image of dir's files (at AppDir, working directory
// AppDir, entrypoint as given) on the base, pushes it as Registry/app:tag
// and returns the pushed reference by digest (Registry/app@sha256:...).
// The same files and entrypoint give the same digest. Building the same
// dir again (artifacts are immutable) pushes nothing new: the Builder
// remembers what it built from (dir, entrypoint, base) and only checks the
// tag, or copies the image it already pushed to a new name or tag.
func (b *Builder) Build(ctx context.Context, app, tag, dir string, entrypoint []string) (string, error) {
	ref, err := b.tag(app, tag)
	if err != nil {
		return "", err
	}
	key, err := b.key(dir, entrypoint)
	if err != nil {
		return "", err
	}
	for {
		e, leader := b.claim(key)
		if leader {
			e.digest, e.err = b.buildAndPush(ctx, ref, dir, entrypoint)
			e.repo = ref.Context()
			b.settle(key, e)
			if e.err != nil {
				return "", e.err
			}
			return digestRef(ref, e.digest), nil
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return "", fmt.Errorf("building image %s: %w", ref, context.Cause(ctx))
		}
		if e.err != nil {
			// The build this one waited for failed; try again itself.
			continue
		}
		return b.reuse(ctx, ref, dir, entrypoint, e)
	}
}

// tag is the reference Build pushes to.
func (b *Builder) tag(app, tag string) (name.Tag, error) {
	s := b.opts.Registry + "/" + app + ":" + tag
	var opts []name.Option
	if b.opts.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.NewTag(s, append(opts, name.StrictValidation)...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("building image %s: invalid image name or tag: %w", s, err)
	}
	return ref, nil
}

func (b *Builder) key(dir string, entrypoint []string) (memoKey, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return memoKey{}, fmt.Errorf("resolving artifact dir %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	ep, _ := json.Marshal(entrypoint)
	return memoKey{dir: abs, entrypoint: string(ep), base: b.opts.Base}, nil
}

// claim returns the memo entry of key; leader says the caller is to build
// it (and settle it).
func (b *Builder) claim(key memoKey) (e *built, leader bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.memo[key]; ok {
		return e, false
	}
	e = &built{done: make(chan struct{})}
	b.memo[key] = e
	return e, true
}

// settle publishes the leader's result; a failed build is forgotten.
func (b *Builder) settle(key memoKey, e *built) {
	b.mu.Lock()
	if e.err != nil {
		delete(b.memo, key)
	}
	b.mu.Unlock()
	close(e.done)
}

// reuse makes ref name an image this Builder has already pushed: nothing
// to do when the tag already has it, else the pushed image is copied
// (its blobs are in the registry already). Should the registry have lost
// it, the image is built again.
func (b *Builder) reuse(ctx context.Context, ref name.Tag, dir string, entrypoint []string, e *built) (string, error) {
	ropts := b.opts.remoteOptions(ctx)
	if desc, err := remote.Head(ref, ropts...); err == nil && desc.Digest == e.digest {
		slog.DebugContext(ctx, "image already pushed", "image", ref.String(), "digest", e.digest.String())
		return digestRef(ref, e.digest), nil
	}
	src := e.repo.Digest(e.digest.String())
	img, err := remote.Image(src, ropts...)
	if err == nil {
		if err := remote.Write(ref, img, ropts...); err != nil {
			return "", fmt.Errorf("pushing image %s (a copy of %s): %w", ref, src, err)
		}
		return digestRef(ref, e.digest), nil
	}
	slog.WarnContext(ctx, "image built before is gone from the registry; building it again", "image", src.String(), "err", err)
	d, err := b.buildAndPush(ctx, ref, dir, entrypoint)
	if err != nil {
		return "", err
	}
	return digestRef(ref, d), nil
}

// buildAndPush builds the image of dir and pushes it as ref.
func (b *Builder) buildAndPush(ctx context.Context, ref name.Tag, dir string, entrypoint []string) (v1.Hash, error) {
	img, cleanup, err := b.build(ctx, dir, entrypoint)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("building image %s of %s: %w", ref, dir, err)
	}
	defer cleanup()
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("building image %s of %s: %w", ref, dir, err)
	}
	if err := remote.Write(ref, img, b.opts.remoteOptions(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing image %s: %w", ref, err)
	}
	slog.InfoContext(ctx, "image pushed", "image", ref.String(), "digest", d.String(), "dir", dir)
	return d, nil
}

// build makes the image of dir on the base. The layer is in a temporary
// file until cleanup.
func (b *Builder) build(ctx context.Context, dir string, entrypoint []string) (img v1.Image, cleanup func(), err error) {
	base, err := b.resolveBase(ctx)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.CreateTemp("", "runway-layer-*.tar.gz")
	if err != nil {
		return nil, nil, fmt.Errorf("creating layer file: %w", err)
	}
	remove := func() { os.Remove(f.Name()) }
	defer func() {
		if err != nil {
			remove()
		}
	}()
	err = writeLayer(f, dir)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing layer file: %w", cerr)
	}
	if err != nil {
		return nil, nil, err
	}

	mt, err := base.MediaType()
	if err != nil {
		return nil, nil, fmt.Errorf("reading base image's media type: %w", err)
	}
	layerType := types.DockerLayer
	if mt == types.OCIManifestSchema1 {
		layerType = types.OCILayer
	}
	layer, err := tarball.LayerFromFile(f.Name(), tarball.WithMediaType(layerType))
	if err != nil {
		return nil, nil, fmt.Errorf("reading layer file: %w", err)
	}
	img, err = mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "runway: artifact files at " + AppDir,
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("adding layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Config.WorkingDir = AppDir
	cf.Config.Entrypoint = slices.Clone(entrypoint)
	cf.Config.Cmd = nil
	cf.Config.Env = withPath(cf.Config.Env)
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, nil, fmt.Errorf("setting image config: %w", err)
	}
	return img, remove, nil
}

// resolveBase returns the base image, fetched once per Builder.
func (b *Builder) resolveBase(ctx context.Context) (v1.Image, error) {
	b.baseMu.Lock()
	defer b.baseMu.Unlock()
	if b.baseImage != nil {
		return b.baseImage, nil
	}
	if b.base == nil {
		b.baseImage = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		return b.baseImage, nil
	}
	img, err := remote.Image(b.base, b.opts.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pulling base image %s: %w", b.base, err)
	}
	// Read manifest and config now: the image is remembered, its errors
	// are not.
	if _, err := img.ConfigFile(); err != nil {
		return nil, fmt.Errorf("pulling base image %s: %w", b.base, err)
	}
	b.baseImage = img
	return img, nil
}

// withPath is env with a PATH, the base's when it has one.
func withPath(env []string) []string {
	env = slices.Clone(env)
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return env
		}
	}
	return append(env, "PATH="+DefaultPath)
}

func digestRef(ref name.Tag, d v1.Hash) string {
	return ref.Context().Name() + "@" + d.String()
}
