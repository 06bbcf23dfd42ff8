package kubernetes

import (
	"context"
	"fmt"
	"sync"

	"github.com/runway-cd/runway/internal/runtime"
)

// builds memoizes the images of artifact directories: an artifact is
// immutable, so its image is built and pushed once per process and app,
// however many versions, replica sets and jobs run it. The key holds the
// image's name (the app) as well as the dir so that the reference, and so
// the pod template, does not depend on which app asked first: a restarted
// control plane computes the same template and restarts nothing.
type builds struct {
	images Images
	mu     sync.Mutex
	byKey  map[buildKey]*build
}

type buildKey struct{ name, dir string }

// build is one image build, done once; failures are not kept.
type build struct {
	done chan struct{}
	ref  string
	err  error
}

// build returns the image reference of dir's files as image name, tagged
// tag when it is pushed first.
func (b *builds) build(ctx context.Context, name, tag, dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("building the image of %s: no artifact dir", name)
	}
	key := buildKey{name, dir}
	for {
		b.mu.Lock()
		if b.byKey == nil {
			b.byKey = map[buildKey]*build{}
		}
		cur := b.byKey[key]
		if cur == nil {
			cur = &build{done: make(chan struct{})}
			b.byKey[key] = cur
			b.mu.Unlock()
			cur.ref, cur.err = b.images.Build(ctx, name, tag, dir, nil)
			if cur.err != nil {
				b.mu.Lock()
				delete(b.byKey, key)
				b.mu.Unlock()
				if ctx.Err() == nil && registryUnavailable(cur.err) {
					cur.err = fmt.Errorf("building the image of %s from %s: %w: %w", name, dir, runtime.ErrUnavailable, cur.err)
				} else {
					cur.err = fmt.Errorf("building the image of %s from %s: %w", name, dir, cur.err)
				}
			}
			close(cur.done)
			return cur.ref, cur.err
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for the image of %s: %w", name, ctx.Err())
		case <-cur.done:
		}
		if cur.err == nil {
			return cur.ref, nil
		}
		// That build failed (its caller's context, say): try ours.
	}
}

// cached is the reference of a build done already, if any.
func (b *builds) cached(name, dir string) (string, bool) {
	b.mu.Lock()
	cur := b.byKey[buildKey{name, dir}]
	b.mu.Unlock()
	if cur == nil {
		return "", false
	}
	select {
	case <-cur.done:
		return cur.ref, cur.err == nil
	default:
		return "", false
	}
}
