package image

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Both builders have the method a consumer's interface asks for.
var (
	_ interface {
		Build(ctx context.Context, name, tag, dir string, entrypoint []string) (string, error)
	} = (*Builder)(nil)
	_ interface {
		Build(ctx context.Context, name, tag, dir string, entrypoint []string) (string, error)
	} = (*Command)(nil)
)

// testRegistry is go-containerregistry's registry on a loopback server,
// counting requests.
type testRegistry struct {
	host string // 127.0.0.1:port

	mu       sync.Mutex
	requests []string // "METHOD path"
	writes   atomic.Int64
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		switch req.Method {
		case http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
			r.writes.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) requestLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

func (r *testRegistry) options() Options {
	return Options{Registry: r.host + "/runway", Insecure: true}
}

// push writes img to the registry as repo:tag and returns its reference.
func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref.String()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// tarEntry is one entry of a layer a test writes.
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	body     string
	linkname string
}

// layerOf is an uncompressed layer of entries, in order.
func layerOf(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeTree makes files in dir: name -> content, with mode; a name ending
// in "/" is a directory; "->target" content makes a symlink.
func writeTree(t *testing.T, dir string, files map[string]treeFile) {
	t.Helper()
	for n, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(n, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case f.link != "":
			if err := os.Symlink(f.link, p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(f.body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if f.mode != 0 {
			if err := os.Chmod(p, f.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type treeFile struct {
	body string
	mode os.FileMode
	link string
}
