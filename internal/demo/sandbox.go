package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/server"
)

// buildCacheDir is the Go build cache every demo and test Runway of this
// machine shares, so that only the first build of a run (or of the first
// run) compiles the example's dependencies.
func buildCacheDir() string { return filepath.Join(os.TempDir(), "runway-test-cache") }

// ModuleProxy serves this process's Go module download cache read-only
// in GOPROXY's file layout (which the cache has) on loopback, so builds
// running as a sandbox uid, which cannot read this user's cache, get the
// modules without the network.
type ModuleProxy struct {
	srv *http.Server
	url string
	// fallback is this process's GOPROXY, asked for what the cache lacks.
	fallback string
}

// StartModuleProxy serves `go env GOMODCACHE`/cache/download. It returns
// nil when there is no go command or no cache: builds then use whatever
// GOPROXY Runway's environment names.
func StartModuleProxy() (*ModuleProxy, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOPROXY").Output()
	if err != nil {
		return nil, nil
	}
	modcache, fallback, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	dir := filepath.Join(modcache, "cache", "download")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the module proxy: %w", err)
	}
	files := http.FileServerFS(os.DirFS(dir))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "read-only", http.StatusMethodNotAllowed)
				return
			}
			files.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return &ModuleProxy{srv: srv, url: "http://" + ln.Addr().String(), fallback: strings.TrimSpace(fallback)}, nil
}

// Configure points the sandboxed builds at the proxy (then, for a module
// the cache lacks, at this process's GOPROXY) and the shared build cache.
// GOSUMDB is off since the proxy cannot answer for the checksum database;
// go.sum still verifies every module.
func (p *ModuleProxy) Configure(cfg *server.Config) {
	if cfg.Sandbox.CacheDir == "" {
		cfg.Sandbox.CacheDir = buildCacheDir()
	}
	if p == nil {
		return
	}
	proxy := p.url
	if p.fallback != "" && p.fallback != "off" {
		proxy += "," + p.fallback
	}
	cfg.Sandbox.Vars = append(cfg.Sandbox.Vars, "GOPROXY="+proxy, "GOSUMDB=off")
}

// Close stops the proxy; a nil proxy has nothing to stop.
func (p *ModuleProxy) Close() error {
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stopping the module proxy: %w", err)
	}
	return nil
}
