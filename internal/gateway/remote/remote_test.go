package remote_test

import (
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

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
)

// The server's router interface checks that Client and Gateway offer the
// same routing table; MetricsURL is what only the client adds.
var _ interface{ MetricsURL() string } = (*remote.Client)(nil)

// fixture is a gateway serving traffic and its admin API on loopback.
type fixture struct {
	g      *gateway.Gateway
	client *remote.Client
	front  string
}

func start(t *testing.T) *fixture {
	t.Helper()
	g := gateway.New(gateway.Options{})
	admin := httptest.NewServer(g.AdminHandler(filepath.Join(t.TempDir(), "routes.json")))
	t.Cleanup(admin.Close)
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	return &fixture{g: g, client: remote.New(admin.URL, ""), front: front.URL}
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logged strings.Builder
	c := remote.New("http://"+addr, "").WithLogger(slog.New(slog.NewTextHandler(&logged, nil)))
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
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	c := remote.New(srv.URL, "")
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
			c := remote.New("http://127.0.0.1:1", tt.domain)
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

func TestClientMetricsURL(t *testing.T) {
	f := start(t)
	if err := f.client.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{backend(t, "ok")}}); err != nil {
		t.Fatal(err)
	}
	f.get(t, "web.localhost")
	resp, err := http.Get(f.client.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `runway_gateway_requests_total{app="web",code="200",env="production",version="v1"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("metrics at %s lack %s:\n%s", f.client.MetricsURL(), want, body)
	}
}
