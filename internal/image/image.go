// Package image builds Runway's artifacts into OCI images and pushes them
// to a registry, ko-style (go-containerregistry, no Docker engine): the
// artifact directory's files become one reproducible layer at AppDir on a
// configurable base image, with the artifact's command as entrypoint. A
// team with an image build of its own plugs it in as a Command instead.
// Extract reads an image back into a directory (the cluster tests' node
// agent runs pods from it).
//
// Both *Builder and *Command have the method a consumer needs; the
// consumer declares the interface, for example:
//
//	type imageBuilder interface {
//		Build(ctx context.Context, name, tag, dir string, entrypoint []string) (string, error)
//	}
//
// (runtime/kubernetes declares it as Images). A Builder returns the pushed
// image by digest (Registry/name@sha256:...), the reference a workload
// should run; a Command returns the reference its command printed.
package image

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// AppDir is where an artifact's files are in its image, and the image's
// working directory.
const AppDir = "/runway/app"

// DefaultPath is the PATH an image gets when its base sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options configure where images go and what they are built on.
type Options struct {
	// Registry is where images are pushed: host[:port][/path], such as
	// "127.0.0.1:5000/runway"; an image of app is Registry/app.
	Registry string
	// Base is the base image's reference; empty: an empty base (scratch),
	// enough for a static Go binary. A multi-platform base gives its
	// linux/<GOARCH of this process> image.
	Base string
	// Insecure allows plain HTTP to the registry (a loopback registry). It
	// applies to references on Registry's host (the base too, when it is
	// there); with Registry empty (Extract), to every reference.
	Insecure bool
	// Transport carries registry requests; nil: go-containerregistry's
	// default transport.
	Transport http.RoundTripper
	// Keychain gives registry credentials; nil: authn.DefaultKeychain
	// (the Docker config file and credential helpers, else anonymous).
	Keychain authn.Keychain
}

// Config is what an image says of how to run it.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
}

// platform is the image a multi-platform index is resolved to.
func platform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// registryHost is the host[:port] part of a Registry option.
func registryHost(registry string) string {
	host, _, _ := strings.Cut(registry, "/")
	return host
}

// parseRef parses an image reference, allowing plain HTTP where o says so.
func (o Options) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	if !o.Insecure {
		return r, nil
	}
	if o.Registry != "" && r.Context().RegistryStr() != registryHost(o.Registry) {
		return r, nil
	}
	return name.ParseReference(ref, name.Insecure)
}

// remoteOptions are the options of every registry call.
func (o Options) remoteOptions(ctx context.Context) []remote.Option {
	keychain := o.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychain),
		remote.WithPlatform(platform()),
		remote.WithUserAgent("runway"),
	}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return opts
}

// configOf is the part of an image's config file Runway reads.
func configOf(cf *v1.ConfigFile) Config {
	return Config{
		Entrypoint: cf.Config.Entrypoint,
		Cmd:        cf.Config.Cmd,
		Env:        cf.Config.Env,
		WorkingDir: cf.Config.WorkingDir,
	}
}
