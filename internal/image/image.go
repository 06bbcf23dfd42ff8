// Package image builds Runway's artifacts into OCI images and pushes them
// to a registry, ko-style (go-containerregistry, no Docker engine): the
// artifact directory's files become one reproducible layer at AppDir on a
// configurable base image, with the artifact's command as entrypoint. A
// team with an image build of its own plugs it in as a Command instead.
// Extract reads an image back into a directory (the cluster tests' node
// agent runs pods from it).
//
// CONTRACT SKELETON written by the lead; the owner replaces the bodies.
package image

import (
	"context"
	"errors"
	"net/http"
)

// AppDir is where an artifact's files are in its image, and the image's
// working directory.
const AppDir = "/runway/app"

// Options configure where images go and what they are built on.
type Options struct {
	// Registry is where images are pushed: host[:port][/path], such as
	// "127.0.0.1:5000/runway"; an image of app is Registry/app.
	Registry string
	// Base is the base image's reference; empty: an empty base (scratch),
	// enough for a static Go binary.
	Base string
	// Insecure allows plain HTTP to the registry (a loopback registry).
	Insecure bool
	// Transport carries registry requests; nil: go-containerregistry's
	// default transport.
	Transport http.RoundTripper
}

// Config is what an image says of how to run it.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
}

// Builder builds and pushes images.
type Builder struct {
	opts Options
}

// New returns a Builder; it fails on an invalid registry or base name.
func New(o Options) (*Builder, error) {
	return nil, errors.New("image: not implemented yet")
}

// Build makes an image of dir's files (at AppDir, working directory
// AppDir, entrypoint as given) on the base, pushes it as Registry/name:tag
// and returns the pushed reference by digest (Registry/name@sha256:...).
// The same files and entrypoint give the same digest. Building the same
// dir again (artifacts are immutable) pushes nothing new.
func (b *Builder) Build(ctx context.Context, name, tag, dir string, entrypoint []string) (string, error) {
	return "", errors.New("image: not implemented yet")
}

// Extract pulls ref and unpacks its filesystem into dest (created; it must
// not exist or be empty), refusing entries that would land outside dest,
// and returns the image's config.
func Extract(ctx context.Context, ref, dest string, o Options) (Config, error) {
	return Config{}, errors.New("image: not implemented yet")
}
