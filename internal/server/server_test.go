package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
)

func TestConfigValidation(t *testing.T) {
	valid := func() Config {
		return Config{DataDir: "/d", StateRepo: RepoConfig{URL: "/s"}, WebhookSecret: "x",
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

// TestServeAndClose starts the real server on loopback and checks that it
// answers and that Close releases both listeners.
func TestServeAndClose(t *testing.T) {
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
		StateRepo: RepoConfig{URL: state}, WebhookSecret: "s"}
	srv, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for _, c := range []struct{ url, want string }{
		{"http://" + srv.APIAddr() + "/healthz", "ok"},
		{"http://" + srv.APIAddr() + "/api/v1/pipelines", "[]"},
		{"http://" + srv.GatewayAddr() + "/", "no route"},
	} {
		resp, err := http.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), c.want) {
			t.Fatalf("GET %s = %q, want %q", c.url, body, c.want)
		}
	}
	apiAddr, gwAddr := srv.APIAddr(), srv.GatewayAddr()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil
	for _, addr := range []string{apiAddr, gwAddr} {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("%s still listens after Close", addr)
		}
	}
	// A second server can take the same data dir.
	srv2, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("reopening the data dir: %v", err)
	}
	if err := srv2.Close(); err != nil {
		t.Fatal(err)
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
