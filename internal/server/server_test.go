package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/procfs"
)

func TestConfigValidation(t *testing.T) {
	valid := func() Config {
		return Config{DataDir: "/d", StateRepo: RepoConfig{URL: "/s"}, WebhookSecret: "0123456789abcdef",
			Apps: []AppConfig{{Name: "web", Repo: "o/web", URL: "/w"}}}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "dataDir is required"},
		{"no state repo", func(c *Config) { c.StateRepo.URL = "" }, "stateRepo.url is required"},
		{"no secret", func(c *Config) { c.WebhookSecret = "" }, "webhookSecret"},
		{"hostile app name", func(c *Config) { c.Apps[0].Name = "../web" }, "DNS label"},
		{"app without url", func(c *Config) { c.Apps[0].URL = "" }, "needs repo and url"},
		{"app twice", func(c *Config) { c.Apps = append(c.Apps, c.Apps[0]) }, "listed twice"},
		{"bad allowed backend", func(c *Config) { c.Gateway.AllowedBackends = []string{"10.0.0.0/33"} }, "gateway.allowedBackends"},
		{"allowed backend host", func(c *Config) { c.Gateway.AllowedBackends = []string{"lan.example"} }, "gateway.allowedBackends"},
		{"short webhook secret", func(c *Config) { c.WebhookSecret = "short" }, "at least 16 characters"},
		{"api host as URL", func(c *Config) { c.API.Hosts = []string{"https://runway.example"} }, "not a URL"},
		{"api host bad port", func(c *Config) { c.API.Hosts = []string{"runway.example:99999"} }, "not a port number"},
		{"api host ok", func(c *Config) { c.API.Hosts = []string{"runway.example", "runway.example:8443", "[::1]:7070"} }, ""},
		{"work dir inside data dir", func(c *Config) { c.WorkDir = "/d/work" }, "must not be dataDir or inside it"},
		{"tls half set", func(c *Config) { c.TLS.CertFile = "/c.pem" }, "set together"},
		{"short admin token", func(c *Config) { c.API.AdminToken = "abc" }, "api.adminToken must be at least 16"},
		{"negative limit", func(c *Config) { c.Limits.Pipelines = -1 }, "limits must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RUNWAY_WEBHOOK_SECRET", "")
			c := valid()
			tt.change(&c)
			c.setDefaults()
			err := c.validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{DataDir: "/d"}
	c.setDefaults()
	if c.Listen != "127.0.0.1:7070" || c.Gateway.Listen != "127.0.0.1:8080" || c.Gateway.Domain != "localhost" ||
		c.StateRepo.Branch != "main" || c.Timeouts.Rollout.Duration != 30*time.Minute || c.ScrapeInterval.Duration != 2*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}

// serveFor runs srv until the returned stop is called; stop returns Run's
// error.
func serveFor(t *testing.T, srv *Server) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// stopGatewayProcess kills the gateway process recorded in dataDir, if it
// still runs.
func stopGatewayProcess(t *testing.T, dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "gateway", "gateway.json"))
	if err != nil {
		return
	}
	var rec struct {
		PID       int    `json:"pid"`
		StartTime uint64 `json:"startTime"`
	}
	if json.Unmarshal(b, &rec) == nil && procfs.Running(rec.PID, rec.StartTime) {
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
		t.Logf("killed the gateway process %d left running", rec.PID)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testReadToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// TestDataPlaneOutlivesControlPlane starts the real server twice on one
// data dir: the gateway process of the first keeps serving after it exits
// and the second adopts it (same address, no second gateway); only a
// server told to stop its data plane stops it.
func TestDataPlaneOutlivesControlPlane(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state.git")
	if err := gitops.InitBare(state, "main"); err != nil {
		t.Fatal(err)
	}
	prod := `{"envname":"production","apps":{}}`
	if _, err := gitops.CommitDir(ctx, state, "main", fstest.MapFS{manifest.ProductionPath: {Data: []byte(prod)}}, "seed"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", Gateway: GatewayConfig{Listen: "127.0.0.1:0"},
		StateRepo: RepoConfig{URL: state}, WebhookSecret: "0123456789abcdef-webhook", API: APIConfig{ReadToken: testReadToken}}

	first, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before serveFor, so it runs after the server stopped:
	// whatever happens, the gateway process is stopped.
	t.Cleanup(func() { stopGatewayProcess(t, cfg.DataDir) })
	stopFirst := serveFor(t, first)
	gwAddr, apiAddr := first.GatewayAddr(), first.APIAddr()
	for _, c := range []struct{ url, want string }{
		{"http://" + apiAddr + "/healthz", "ok"},
		{"http://" + apiAddr + "/api/v1/pipelines", "[]"},
		{"http://" + gwAddr + "/", "no route"},
	} {
		if got := get(t, c.url); !strings.Contains(got, c.want) {
			t.Fatalf("GET %s = %q, want %q", c.url, got, c.want)
		}
	}
	if err := stopFirst(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if listening(apiAddr) {
		t.Fatal("the API still listens after Close")
	}
	if got := get(t, "http://"+gwAddr+"/"); !strings.Contains(got, "no route") {
		t.Fatalf("the gateway stopped with the control plane: %q", got)
	}

	cfg.StopDataPlaneOnExit = true
	second, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("restarting on the same data dir: %v", err)
	}
	if second.GatewayAddr() != gwAddr {
		t.Fatalf("second server's gateway on %s, want the adopted one on %s", second.GatewayAddr(), gwAddr)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if listening(gwAddr) {
		t.Fatal("the gateway still listens after a Close that stops the data plane")
	}
}

func TestScrapeTargets(t *testing.T) {
	routes := []gateway.Route{
		{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}},
			CanaryVersion: "v2", Canary: []gateway.Backend{{Addr: "127.0.0.1:3"}}},
		{Env: "v3", App: "web", StableVersion: "v3", Stable: []gateway.Backend{{Addr: "127.0.0.1:4"}}},
	}
	got := scrapeTargets("http://127.0.0.1:7070/metrics", routes)
	want := []string{
		"http://127.0.0.1:7070/metrics job=runway-gateway",
		"http://127.0.0.1:1/metrics env=production app=web version=v1",
		"http://127.0.0.1:2/metrics env=production app=web version=v1",
		"http://127.0.0.1:3/metrics env=production app=web version=v2",
		"http://127.0.0.1:4/metrics env=v3 app=web version=v3",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d targets, want %d: %+v", len(got), len(want), got)
	}
	for i, tg := range got {
		s := tg.URL
		if j := tg.Labels["job"]; j == "runway-gateway" {
			s += " job=" + j
		} else {
			s += " env=" + tg.Labels["env"] + " app=" + tg.Labels["app"] + " version=" + tg.Labels["version"]
		}
		if s != want[i] {
			t.Errorf("target %d = %s, want %s", i, s, want[i])
		}
	}
}
