package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// adminFixture is a gateway with its admin API served on a unix socket.
type adminFixture struct {
	g      *Gateway
	socket string
	client *http.Client
	state  string
}

func startAdmin(t *testing.T) *adminFixture {
	t.Helper()
	return startAdminWith(t, Options{})
}

func startAdminWith(t *testing.T, o Options) *adminFixture {
	t.Helper()
	dir := t.TempDir()
	f := &adminFixture{g: New(o), state: filepath.Join(dir, "routes.json"), socket: filepath.Join(dir, "admin.sock")}
	ln, err := listenAdmin(f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(f.g.AdminHandler(f.state))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	f.client = unixClient(f.socket)
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// unixClient sends every request to the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// do sends a request to the admin API and returns its status and body.
func (f *adminFixture) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://gateway"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// saved returns the routes in the fixture's state file.
func (f *adminFixture) saved(t *testing.T) []Route {
	t.Helper()
	g := New(Options{})
	if err := g.LoadRoutes(f.state); err != nil {
		t.Fatal(err)
	}
	return g.Routes()
}

func TestAdminChanges(t *testing.T) {
	web := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}},
		CanaryVersion: "v2", Canary: []Backend{{Addr: "127.0.0.1:8082"}}}
	webJSON := `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}],"CanaryVersion":"v2","Canary":[{"Addr":"127.0.0.1:8082"}]}`
	tests := []struct {
		name string
		// setup routes are set directly on the gateway before the request.
		setup      []Route
		method     string
		path       string
		body       string
		wantStatus int
		wantRoutes []Route
	}{
		{name: "put route", method: http.MethodPut, path: "/routes/production/web", body: webJSON,
			wantStatus: http.StatusOK, wantRoutes: []Route{web}},
		{name: "put route naming itself", method: http.MethodPut, path: "/routes/production/web",
			body:       `{"Env":"production","App":"web","StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}],"CanaryVersion":"v2","Canary":[{"Addr":"127.0.0.1:8082"}]}`,
			wantStatus: http.StatusOK, wantRoutes: []Route{web}},
		{name: "put replaces", setup: []Route{{Env: "production", App: "web", StableVersion: "v0"}},
			method: http.MethodPut, path: "/routes/production/web", body: webJSON,
			wantStatus: http.StatusOK, wantRoutes: []Route{web}},
		{name: "set weight", setup: []Route{web}, method: http.MethodPost, path: "/routes/production/web/weight",
			body: `{"weight":40}`, wantStatus: http.StatusOK,
			wantRoutes: []Route{func() Route { r := web.clone(); r.CanaryWeight = 40; return r }()}},
		{name: "remove route", setup: []Route{web, {Env: "production", App: "db"}}, method: http.MethodDelete,
			path: "/routes/production/web", wantStatus: http.StatusNoContent, wantRoutes: []Route{{Env: "production", App: "db"}}},
		{name: "remove missing route", method: http.MethodDelete, path: "/routes/production/web",
			wantStatus: http.StatusNoContent, wantRoutes: []Route{}},
		{name: "remove env", setup: []Route{web, {Env: "stage1", App: "web"}, {Env: "stage1", App: "db"}},
			method: http.MethodDelete, path: "/envs/stage1", wantStatus: http.StatusNoContent, wantRoutes: []Route{web}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startAdmin(t)
			for _, r := range tt.setup {
				mustSetRoute(t, f.g, r)
			}
			status, body := f.do(t, tt.method, tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", status, body, tt.wantStatus)
			}
			if got := f.g.Routes(); !reflect.DeepEqual(got, tt.wantRoutes) {
				t.Errorf("routes = %+v, want %+v", got, tt.wantRoutes)
			}
			if got := f.saved(t); !reflect.DeepEqual(got, tt.wantRoutes) {
				t.Errorf("saved routes = %+v, want %+v", got, tt.wantRoutes)
			}
			if status == http.StatusOK {
				var got Route
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("decoding answer %q: %v", body, err)
				}
				if want, _ := f.g.Route("production", "web"); !reflect.DeepEqual(got, want) {
					t.Errorf("answered route = %+v, want %+v", got, want)
				}
			}
		})
	}
}

func TestAdminRejects(t *testing.T) {
	existing := Route{Env: "production", App: "web", StableVersion: "v1"}
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantError  string
	}{
		{name: "bad json", method: http.MethodPut, path: "/routes/production/api", body: `{"StableVersion":`,
			wantStatus: http.StatusBadRequest, wantError: "decoding body"},
		{name: "unknown field", method: http.MethodPut, path: "/routes/production/api", body: `{"Stabel":"v1"}`,
			wantStatus: http.StatusBadRequest, wantError: "unknown field"},
		{name: "trailing data", method: http.MethodPut, path: "/routes/production/api", body: `{} {}`,
			wantStatus: http.StatusBadRequest, wantError: "after"},
		{name: "invalid route", method: http.MethodPut, path: "/routes/production/api",
			body: `{"CanaryWeight":10}`, wantStatus: http.StatusBadRequest, wantError: "invalid route"},
		{name: "invalid name", method: http.MethodPut, path: "/routes/production/API", body: `{}`,
			wantStatus: http.StatusBadRequest, wantError: "invalid route"},
		{name: "body names another route", method: http.MethodPut, path: "/routes/production/api",
			body: `{"Env":"production","App":"web"}`, wantStatus: http.StatusBadRequest, wantError: "path names"},
		{name: "body too large", method: http.MethodPut, path: "/routes/production/api",
			body: `{"StableVersion":"` + strings.Repeat("v", maxAdminBody) + `"}`, wantStatus: http.StatusRequestEntityTooLarge, wantError: "body over"},
		{name: "weight of missing route", method: http.MethodPost, path: "/routes/production/api/weight",
			body: `{"weight":10}`, wantStatus: http.StatusNotFound, wantError: "no such route"},
		{name: "weight out of range", method: http.MethodPost, path: "/routes/production/web/weight",
			body: `{"weight":101}`, wantStatus: http.StatusBadRequest, wantError: "invalid route"},
		{name: "weight unknown field", method: http.MethodPost, path: "/routes/production/web/weight",
			body: `{"wieght":10}`, wantStatus: http.StatusBadRequest, wantError: "unknown field"},
		{name: "ready without ready", method: http.MethodPost, path: "/backends/ready",
			body: `{"addr":"127.0.0.1:1"}`, wantStatus: http.StatusBadRequest, wantError: "ready: required"},
		{name: "ready host name", method: http.MethodPost, path: "/backends/ready",
			body: `{"addr":"localhost:1","ready":true}`, wantStatus: http.StatusBadRequest, wantError: "invalid route"},
		{name: "ready unknown field", method: http.MethodPost, path: "/backends/ready",
			body: `{"addr":"127.0.0.1:1","ready":true,"x":1}`, wantStatus: http.StatusBadRequest, wantError: "unknown field"},
		{name: "drain bad address", method: http.MethodPost, path: "/backends/drain",
			body: `{"addr":"127.0.0.1"}`, wantStatus: http.StatusBadRequest, wantError: "invalid route"},
		{name: "drain negative timeout", method: http.MethodPost, path: "/backends/drain",
			body: `{"addr":"127.0.0.1:1","timeoutMillis":-1}`, wantStatus: http.StatusBadRequest, wantError: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startAdmin(t)
			mustSetRoute(t, f.g, existing)
			status, body := f.do(t, tt.method, tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", status, body, tt.wantStatus)
			}
			var e ErrorResponse
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.wantError) {
				t.Errorf("body = %q, want an error containing %q", body, tt.wantError)
			}
			if got := f.g.Routes(); !reflect.DeepEqual(got, []Route{existing}) {
				t.Errorf("routes after a rejected request = %+v, want unchanged", got)
			}
			if _, err := os.Stat(f.state); !os.IsNotExist(err) {
				t.Errorf("rejected request wrote the state file (stat: %v)", err)
			}
		})
	}
}

func TestAdminReads(t *testing.T) {
	f := startAdmin(t)
	web := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}}}
	mustSetRoute(t, f.g, web)

	status, body := f.do(t, http.MethodGet, "/healthz", "")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); status != http.StatusOK || err != nil {
		t.Fatalf("GET /healthz = %d %q (%v)", status, body, err)
	}
	if h.Status != "ok" || h.PID != os.Getpid() || h.Routes != 1 {
		t.Errorf("health = %+v, want ok, pid %d, 1 route", h, os.Getpid())
	}

	status, body = f.do(t, http.MethodGet, "/routes", "")
	var rs []Route
	if err := json.Unmarshal([]byte(body), &rs); status != http.StatusOK || err != nil {
		t.Fatalf("GET /routes = %d %q (%v)", status, body, err)
	}
	if !reflect.DeepEqual(rs, []Route{web}) {
		t.Errorf("GET /routes = %+v, want %+v", rs, []Route{web})
	}

	status, body = f.do(t, http.MethodGet, "/routes/production/web", "")
	var one Route
	if err := json.Unmarshal([]byte(body), &one); status != http.StatusOK || err != nil {
		t.Fatalf("GET /routes/production/web = %d %q (%v)", status, body, err)
	}
	if !reflect.DeepEqual(one, web) {
		t.Errorf("GET /routes/production/web = %+v, want %+v", one, web)
	}
	if status, body := f.do(t, http.MethodGet, "/routes/production/api", ""); status != http.StatusNotFound {
		t.Errorf("GET of a missing route = %d %q, want 404", status, body)
	}

	status, body = f.do(t, http.MethodGet, "/metrics", "")
	if status != http.StatusOK || !strings.Contains(body, "runway_gateway_request_duration_seconds") {
		t.Errorf("GET /metrics = %d, body lacks the gateway's series:\n%s", status, body)
	}

	if status, _ := f.do(t, http.MethodPost, "/routes", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /routes = %d, want 405", status)
	}
}

func TestAdminRestartKeepsRoutes(t *testing.T) {
	f := startAdmin(t)
	if status, body := f.do(t, http.MethodPut, "/routes/production/web", `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}]}`); status != http.StatusOK {
		t.Fatalf("PUT = %d %s", status, body)
	}
	if status, body := f.do(t, http.MethodPut, "/routes/production/web", `{"StableVersion":"v1","CanaryVersion":"v2"}`); status != http.StatusOK {
		t.Fatalf("PUT = %d %s", status, body)
	}
	if status, body := f.do(t, http.MethodPost, "/routes/production/web/weight", `{"weight":50}`); status != http.StatusOK {
		t.Fatalf("POST weight = %d %s", status, body)
	}
	restarted := New(Options{})
	if err := restarted.LoadRoutes(f.state); err != nil {
		t.Fatal(err)
	}
	if got, want := restarted.Routes(), f.g.Routes(); !reflect.DeepEqual(got, want) {
		t.Errorf("restarted gateway routes = %+v, want %+v", got, want)
	}
}

// TestAdminUnixOnly serves the admin handler on loopback TCP, which any
// local user can reach: it must refuse every request there.
func TestAdminUnixOnly(t *testing.T) {
	g := New(Options{})
	state := filepath.Join(t.TempDir(), "routes.json")
	srv := httptest.NewServer(g.AdminHandler(state))
	t.Cleanup(srv.Close)
	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/healthz", ""},
		{http.MethodPut, "/routes/production/web", `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}]}`},
		{http.MethodPut, "/policy", `{"allowed":["0.0.0.0/0"]}`},
	} {
		r, err := http.NewRequest(req.method, srv.URL+req.path, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s over TCP = %d, want 403", req.method, req.path, resp.StatusCode)
		}
	}
	if rs := g.Routes(); len(rs) != 0 {
		t.Errorf("routes after refused requests = %+v, want none", rs)
	}
	if p := g.Policy(); len(p.Allowed) != 0 {
		t.Errorf("policy after a refused request = %+v, want loopback only", p)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("refused requests wrote the state file (stat: %v)", err)
	}
}
