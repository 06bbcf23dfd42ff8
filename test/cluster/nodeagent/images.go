package nodeagent

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runway-cd/runway/internal/image"
)

// imageCache pulls images once per digest into dir/<algo>-<hex> and
// copies them into containers' rootfs directories.
type imageCache struct {
	dir  string
	opts image.Options

	mu      sync.Mutex
	entries map[string]*imageEntry // by digest
}

type imageEntry struct {
	done   chan struct{} // closed when the pull ended
	rootfs string
	cfg    image.Config
	err    error
}

// pulled is an image ready to copy into a container.
type pulled struct {
	imageID string // repository@digest
	rootfs  string // the cache's tree: copy it, never run in it
	cfg     image.Config
}

// pull resolves ref to a digest and extracts that image unless it has
// been already. A failed pull is not remembered: the next one retries.
func (c *imageCache) pull(ctx context.Context, ref string) (pulled, error) {
	r, err := c.parse(ref)
	if err != nil {
		return pulled{}, err
	}
	digest, err := c.digest(ctx, r)
	if err != nil {
		return pulled{}, err
	}
	imageID := r.Context().Name() + "@" + digest
	c.mu.Lock()
	e, ok := c.entries[digest]
	if !ok {
		e = &imageEntry{done: make(chan struct{})}
		c.entries[digest] = e
		c.mu.Unlock()
		e.rootfs, e.cfg, e.err = c.extract(ctx, imageID, digest)
		close(e.done)
		if e.err != nil {
			c.mu.Lock()
			delete(c.entries, digest)
			c.mu.Unlock()
		}
	} else {
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return pulled{}, ctx.Err()
		}
	}
	if e.err != nil {
		return pulled{}, e.err
	}
	return pulled{imageID: imageID, rootfs: e.rootfs, cfg: e.cfg}, nil
}

// parse reads ref as image.Extract does: plain HTTP allowed where the
// options allow it.
func (c *imageCache) parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	if !c.opts.Insecure {
		return r, nil
	}
	if host, _, _ := strings.Cut(c.opts.Registry, "/"); c.opts.Registry != "" && r.Context().RegistryStr() != host {
		return r, nil
	}
	return name.ParseReference(ref, name.Insecure)
}

// digest is r's digest: written in it, or asked of the registry.
func (c *imageCache) digest(ctx context.Context, r name.Reference) (string, error) {
	if d, ok := r.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	if c.opts.Transport != nil {
		opts = append(opts, remote.WithTransport(c.opts.Transport))
	}
	if c.opts.Keychain != nil {
		opts = append(opts, remote.WithAuthFromKeychain(c.opts.Keychain))
	}
	desc, err := remote.Head(r, opts...)
	if err != nil {
		return "", fmt.Errorf("resolving image %s: %w", r, err)
	}
	return desc.Digest.String(), nil
}

func (c *imageCache) extract(ctx context.Context, ref, digest string) (string, image.Config, error) {
	final := filepath.Join(c.dir, strings.ReplaceAll(digest, ":", "-"))
	tmp, err := os.MkdirTemp(c.dir, "pull-")
	if err != nil {
		return "", image.Config{}, fmt.Errorf("pulling %s: %w", ref, err)
	}
	defer os.RemoveAll(tmp)
	cfg, err := image.Extract(ctx, ref, filepath.Join(tmp, "rootfs"), c.opts)
	if err != nil {
		return "", image.Config{}, err
	}
	os.RemoveAll(final) // a leftover of an interrupted pull
	if err := os.Rename(filepath.Join(tmp, "rootfs"), final); err != nil {
		return "", image.Config{}, fmt.Errorf("pulling %s: %w", ref, err)
	}
	return final, cfg, nil
}

// copyTree copies the tree at src to dst (which must not exist),
// keeping permission bits and symlinks, owned by uid:gid when uid >= 0.
func copyTree(src, dst string, uid, gid int) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()|0o700); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(p, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil // devices, fifos: Extract skips them anyway
		}
		if uid >= 0 {
			return os.Lchown(target, uid, gid)
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
