package remote_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
)

// fixture is a gateway serving traffic on loopback and its admin API on a
// unix socket.
type fixture struct {
	g      *gateway.Gateway
	client *remote.Client
	front  string
}

func start(t *testing.T) *fixture {
	t.Helper()
	g := gateway.New(gateway.Options{})
	sock := serveUnix(t, g.AdminHandler(filepath.Join(t.TempDir(), "routes.json")))
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	return &fixture{g: g, client: remote.New(sock, ""), front: front.URL}
}

// serveUnix serves h on a unix socket in a new temp dir and returns its
// path.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

// get sends a GET with Host host through the gateway and returns the body.
func (f *fixture) get(t *testing.T, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.front+"/ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func backend(t *testing.T, answer string) gateway.Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return gateway.Backend{Addr: srv.Listener.Addr().String()}
}

func TestClientRoutesTraffic(t *testing.T) {
	f := start(t)
	stable, canary := backend(t, "stable"), backend(t, "canary")
	r := gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{stable},
		CanaryVersion: "v2", Canary: []gateway.Backend{canary}}
	if err := f.client.SetRoute(r); err != nil {
		t.Fatalf("SetRoute: %v", err)
	}
	host := f.client.Host("production", "web")
	if code, body := f.get(t, host); code != http.StatusOK || body != "stable" {
		t.Fatalf("GET via %s = %d %q, want 200 stable", host, code, body)
	}
	if err := f.client.SetCanaryWeight("production", "web", 100); err != nil {
		t.Fatalf("SetCanaryWeight: %v", err)
	}
	if code, body := f.get(t, host); code != http.StatusOK || body != "canary" {
		t.Fatalf("GET at weight 100 = %d %q, want 200 canary", code, body)
	}
	got, ok := f.client.Route("production", "web")
	r.CanaryWeight = 100
	if !ok || !reflect.DeepEqual(got, r) {
		t.Errorf("Route = %+v, %v, want %+v", got, ok, r)
	}
	if got := f.client.Routes(); !reflect.DeepEqual(got, f.g.Routes()) {
		t.Errorf("Routes = %+v, want %+v", got, f.g.Routes())
	}
	f.client.RemoveRoute("production", "web")
	if code, _ := f.get(t, host); code != http.StatusNotFound {
		t.Errorf("GET after RemoveRoute = %d, want 404", code)
	}
	if _, ok := f.client.Route("production", "web"); ok {
		t.Error("Route found after RemoveRoute")
	}
}

func TestClientReadyAndDrain(t *testing.T) {
	f := start(t)
	a, b := backend(t, "a"), backend(t, "b")
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slowSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	}))
	t.Cleanup(slowSrv.Close)
	slow := gateway.Backend{Addr: slowSrv.Listener.Addr().String()}
	if err := f.client.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{a, b}}); err != nil {
		t.Fatal(err)
	}
	f.client.SetReady(a.Addr, false)
	for range 3 {
		if _, body := f.get(t, "web.localhost"); body != "b" {
			t.Errorf("with a unready: served by %q, want b", body)
		}
	}
	f.client.SetReady(a.Addr, true)
	seen := map[string]bool{}
	for range 2 {
		_, body := f.get(t, "web.localhost")
		seen[body] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("with a ready again: served by %v, want a and b", seen)
	}

	if err := f.client.SetRoute(gateway.Route{Env: "staging", App: "web", StableVersion: "v1", Stable: []gateway.Backend{slow}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { f.get(t, "web.staging.localhost"); close(done) }()
	<-arrived
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := f.client.Drain(ctx, slow.Addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a request in flight = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	<-done
	if err := f.client.Drain(t.Context(), slow.Addr); err != nil {
		t.Errorf("Drain = %v", err)
	}
	if err := f.client.Drain(t.Context(), "localhost:1"); !errors.Is(err, gateway.ErrInvalidRoute) {
		t.Errorf("Drain of a host name = %v, want ErrInvalidRoute", err)
	}
}

func TestClientRouteListen(t *testing.T) {
	g := gateway.New(gateway.Options{DirectListeners: true})
	t.Cleanup(func() { g.Close() })
	client := remote.New(serveUnix(t, g.AdminHandler(filepath.Join(t.TempDir(), "routes.json"))), "")
	b := backend(t, "direct")
	if err := client.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{b}}); err != nil {
		t.Fatal(err)
	}
	r, ok := client.Route("production", "web")
	if !ok || r.Listen == "" {
		t.Fatalf("Route = %+v, %v; want its direct listener", r, ok)
	}
	resp, err := http.Get("http://" + r.Listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); string(body) != "direct" {
		t.Errorf("GET http://%s/ = %q, want direct", r.Listen, body)
	}
}

func TestClientRemoveEnv(t *testing.T) {
	f := start(t)
	for _, r := range []gateway.Route{{Env: "stage1", App: "web"}, {Env: "stage1", App: "db"}, {Env: "production", App: "web"}} {
		if err := f.client.SetRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	f.client.RemoveEnv("stage1")
	got := f.client.Routes()
	if len(got) != 1 || got[0].Env != "production" {
		t.Errorf("Routes after RemoveEnv = %+v, want only production/web", got)
	}
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name string
		call func(*remote.Client) error
		want error
	}{
		{name: "invalid route", call: func(c *remote.Client) error {
			return c.SetRoute(gateway.Route{Env: "production", App: "Web"})
		}, want: gateway.ErrInvalidRoute},
		{name: "weight without canary", call: func(c *remote.Client) error {
			return c.SetRoute(gateway.Route{Env: "production", App: "web", CanaryWeight: 5})
		}, want: gateway.ErrInvalidRoute},
		{name: "weight of missing route", call: func(c *remote.Client) error {
			return c.SetCanaryWeight("production", "nope", 10)
		}, want: gateway.ErrNoRoute},
		{name: "weight out of range", call: func(c *remote.Client) error {
			if err := c.SetRoute(gateway.Route{Env: "production", App: "web", CanaryVersion: "v2"}); err != nil {
				return err
			}
			return c.SetCanaryWeight("production", "web", 101)
		}, want: gateway.ErrInvalidRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t)
			err := tt.call(f.client)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want one wrapping %v", err, tt.want)
			}
		})
	}
}

func TestClientGatewayDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	var logged strings.Builder
	c := remote.New(sock, "").WithLogger(slog.New(slog.NewTextHandler(&logged, nil)))
	if err := c.SetRoute(gateway.Route{Env: "production", App: "web"}); err == nil || !strings.Contains(err.Error(), "setting route production/web") {
		t.Errorf("SetRoute to a gateway that is down = %v, want an error saying what was done", err)
	}
	if err := c.SetCanaryWeight("production", "web", 0); err == nil || errors.Is(err, gateway.ErrNoRoute) {
		t.Errorf("SetCanaryWeight to a gateway that is down = %v, want a transport error", err)
	}
	if _, ok := c.Route("production", "web"); ok {
		t.Error("Route found on a gateway that is down")
	}
	if rs := c.Routes(); rs != nil {
		t.Errorf("Routes on a gateway that is down = %+v", rs)
	}
	c.RemoveRoute("production", "web") // logs, must not panic
	c.RemoveEnv("production")
	if !strings.Contains(logged.String(), "level=ERROR") {
		t.Errorf("the client's logger got no error while the gateway was down: %q", logged.String())
	}
}

func TestClientNotAGateway(t *testing.T) {
	c := remote.New(serveUnix(t, http.NotFoundHandler()), "")
	err := c.SetCanaryWeight("production", "web", 0)
	if err == nil || errors.Is(err, gateway.ErrNoRoute) {
		t.Errorf("SetCanaryWeight against a plain 404 server = %v, want an error that is not ErrNoRoute", err)
	}
}

func TestClientHost(t *testing.T) {
	tests := []struct {
		name   string
		domain string
		env    string
		app    string
		want   string
	}{
		{name: "production default domain", env: "production", app: "web", want: "web.localhost"},
		{name: "staging default domain", env: "v20240101", app: "web", want: "web.v20240101.localhost"},
		{name: "custom domain", domain: "Example.COM.", env: "production", app: "api", want: "api.example.com"},
		{name: "staging custom domain", domain: "example.com", env: "pr-7", app: "api", want: "api.pr-7.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := remote.New("/nonexistent/admin.sock", tt.domain)
			got := c.Host(tt.env, tt.app)
			if got != tt.want {
				t.Errorf("Host = %q, want %q", got, tt.want)
			}
			if g := gateway.New(gateway.Options{Domain: tt.domain}); got != g.Host(tt.env, tt.app) {
				t.Errorf("Host = %q, gateway.Host = %q", got, g.Host(tt.env, tt.app))
			}
		})
	}
}

func TestClientSetPolicy(t *testing.T) {
	f := start(t)
	lan := gateway.Route{Env: "production", App: "lan", StableVersion: "v1", Stable: []gateway.Backend{{Addr: "10.0.0.5:80"}}}
	if err := f.client.SetRoute(lan); !errors.Is(err, gateway.ErrInvalidRoute) || !strings.Contains(err.Error(), "allowed CIDR") {
		t.Fatalf("SetRoute to a LAN backend = %v, want ErrInvalidRoute naming the allow-list", err)
	}
	if _, err := f.client.SetPolicy(gateway.BackendPolicy{Allowed: []string{"10.0.0.0/99"}}); !errors.Is(err, gateway.ErrInvalidRoute) {
		t.Fatalf("SetPolicy with a bad CIDR = %v, want ErrInvalidRoute", err)
	}
	if _, err := f.client.SetPolicy(gateway.BackendPolicy{Allowed: []string{"10.0.0.0/8"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.SetRoute(lan); err != nil {
		t.Fatalf("SetRoute to an allowed CIDR: %v", err)
	}
	removed, err := f.client.SetPolicy(gateway.BackendPolicy{})
	if err != nil || len(removed) != 1 || removed[0] != "production/lan" {
		t.Errorf("SetPolicy narrowing = %v, %v; want production/lan removed", removed, err)
	}
}
