package server

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
)

// TestDataPlaneBackendPolicy checks, for both gateway modes, that the data
// plane refuses backends off loopback unless configured, the API's address
// and the gateway's own, and that its metrics are served on a listener of
// their own (the API's /metrics needs a token the scraper lacks).
func TestDataPlaneBackendPolicy(t *testing.T) {
	for _, mode := range []string{"inprocess", "process"} {
		t.Run(mode, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			cfg := Config{DataDir: dataDir, Gateway: GatewayConfig{Listen: "127.0.0.1:0", Mode: mode, Domain: "localhost",
				AllowedBackends: []string{"192.0.2.0/24"}}}
			if mode == "process" {
				// A gateway dir left 0755 by an older Runway is closed up.
				if err := os.MkdirAll(filepath.Join(dataDir, "gateway"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			const apiAddr = "127.0.0.1:7999"
			t.Cleanup(func() { stopGatewayProcess(t, dataDir) })
			d, err := newDataPlane(context.Background(), cfg, apiAddr, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.run(runCtx) }()
			t.Cleanup(func() {
				cancel()
				if err := d.close(context.Background(), true); err != nil {
					t.Errorf("close: %v", err)
				}
				<-done
			})

			for _, c := range []struct {
				addr string
				ok   bool
			}{
				{"127.0.0.1:9", true},
				{"192.0.2.7:80", true},
				{"198.51.100.7:80", false},
				{"localhost:9", false},
				{apiAddr, false},
				{d.addr, false},
			} {
				err := d.router.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{{Addr: c.addr}}})
				if c.ok && err != nil {
					t.Errorf("SetRoute to %s: %v", c.addr, err)
				}
				if !c.ok && !errors.Is(err, gateway.ErrInvalidRoute) {
					t.Errorf("SetRoute to %s = %v, want ErrInvalidRoute", c.addr, err)
				}
			}

			if !strings.HasPrefix(d.metricsURL, "http://127.0.0.1:") || strings.Contains(d.metricsURL, apiAddr) {
				t.Errorf("metrics URL = %s, want a loopback listener of its own", d.metricsURL)
			}
			resp, err := http.Get(d.metricsURL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "runway_gateway_request_duration_seconds") {
				t.Errorf("GET %s = %d, want the gateway's series:\n%s", d.metricsURL, resp.StatusCode, body)
			}
			resp, err = http.Get(strings.TrimSuffix(d.metricsURL, "/metrics") + "/routes")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET /routes on the metrics listener = %d, want 404", resp.StatusCode)
			}

			if mode == "inprocess" {
				if s := d.srv; s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 || s.MaxHeaderBytes == 0 {
					t.Errorf("in-process gateway server lacks bounds: %+v", s)
				}
				return
			}
			dir := filepath.Join(dataDir, "gateway")
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("gateway dir: %v (%v), want 0700", fi.Mode(), err)
			}
			fi, err := os.Lstat(filepath.Join(dir, "admin.sock"))
			if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Errorf("admin socket: %v (%v), want a 0600 socket", fi.Mode(), err)
			}
		})
	}
}
