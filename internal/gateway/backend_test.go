package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestAdminBackendPolicy sends routes with each kind of backend address to
// the admin API of a gateway that listens on 127.0.0.1:8080, allows
// 10.0.0.0/8 and fd00::/8 and reserves the API's 127.0.0.1:7070 and port
// 9090 on every local address. A refused route is a 400 whose message names
// the problem, and changes neither the table nor the state file.
func TestAdminBackendPolicy(t *testing.T) {
	tests := []struct {
		name      string
		addr      string
		wantError string // empty: accepted
	}{
		{name: "ipv4 loopback", addr: "127.0.0.1:8081"},
		{name: "other loopback address", addr: "127.5.6.7:8081"},
		{name: "ipv6 loopback", addr: "[::1]:8081"},
		{name: "ipv4-mapped loopback", addr: "[::ffff:127.0.0.1]:8081"},
		{name: "in allowed cidr", addr: "10.1.2.3:80"},
		{name: "in allowed ipv6 cidr", addr: "[fd00::5]:80"},
		{name: "port 65535", addr: "127.0.0.1:65535"},
		{name: "lan outside the cidrs", addr: "192.168.1.10:80", wantError: "neither on loopback nor in an allowed CIDR"},
		{name: "public address", addr: "8.8.8.8:53", wantError: "neither on loopback nor in an allowed CIDR"},
		{name: "link-local metadata", addr: "169.254.169.254:80", wantError: "neither on loopback nor in an allowed CIDR"},
		{name: "ipv6 outside the cidrs", addr: "[2001:db8::1]:80", wantError: "neither on loopback nor in an allowed CIDR"},
		{name: "unspecified ipv4", addr: "0.0.0.0:8081", wantError: "unspecified"},
		{name: "unspecified ipv6", addr: "[::]:8081", wantError: "unspecified"},
		{name: "host name", addr: "localhost:8081", wantError: "not an IP address"},
		{name: "external host name", addr: "example.com:80", wantError: "not an IP address"},
		{name: "ipv6 zone", addr: "[fe80::1%lo]:80", wantError: "not an IP address"},
		{name: "port zero", addr: "127.0.0.1:0", wantError: "not in 1..65535"},
		{name: "port too large", addr: "127.0.0.1:65536", wantError: "not in 1..65535"},
		{name: "negative port", addr: "127.0.0.1:-1", wantError: "not in 1..65535"},
		{name: "named port", addr: "127.0.0.1:http", wantError: "not in 1..65535"},
		{name: "no port", addr: "127.0.0.1", wantError: "want IP:port"},
		{name: "no host", addr: ":8081", wantError: "no host"},
		{name: "url instead of address", addr: "http://127.0.0.1:8081", wantError: "want IP:port"},
		{name: "the gateway itself", addr: "127.0.0.1:8080", wantError: "would loop"},
		{name: "the api", addr: "127.0.0.1:7070", wantError: "would loop"},
		{name: "api other address", addr: "127.0.0.1:7071"},
		{name: "port reserved everywhere, loopback", addr: "127.0.0.2:9090", wantError: "would loop"},
		{name: "port reserved everywhere, ipv6 loopback", addr: "[::1]:9090", wantError: "would loop"},
		{name: "port reserved everywhere, remote host", addr: "10.9.9.9:9090"},
	}
	existing := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}}}
	for _, tt := range tests {
		for _, pool := range []string{"Stable", "Canary"} {
			t.Run(tt.name+"/"+pool, func(t *testing.T) {
				f := startAdminWith(t, Options{
					Self:     "127.0.0.1:8080",
					Backends: BackendPolicy{Allowed: []string{"10.0.0.0/8", "fd00::/8"}, Reserved: []string{"127.0.0.1:7070", ":9090"}},
				})
				mustSetRoute(t, f.g, existing)
				addr, _ := json.Marshal(tt.addr)
				body := `{"StableVersion":"v1","Stable":[{"Addr":` + string(addr) + `}]}`
				if pool == "Canary" {
					body = `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}],"CanaryVersion":"v2","CanaryWeight":10,"Canary":[{"Addr":` + string(addr) + `}]}`
				}
				status, answer := f.do(t, http.MethodPut, "/routes/production/api", body)
				if tt.wantError == "" {
					if status != http.StatusOK {
						t.Fatalf("PUT with backend %s = %d %s, want 200", tt.addr, status, answer)
					}
					if _, ok := f.g.Route("production", "api"); !ok {
						t.Error("accepted route not in the table")
					}
					return
				}
				var e ErrorResponse
				if err := json.Unmarshal([]byte(answer), &e); status != http.StatusBadRequest || err != nil || !strings.Contains(e.Error, tt.wantError) {
					t.Fatalf("PUT with backend %s = %d %s, want 400 saying %q", tt.addr, status, answer, tt.wantError)
				}
				if got := f.g.Routes(); !reflect.DeepEqual(got, []Route{existing}) {
					t.Errorf("routes after a refused backend = %+v, want unchanged", got)
				}
				if _, err := os.Stat(f.state); !os.IsNotExist(err) {
					t.Errorf("refused route wrote the state file (stat: %v)", err)
				}
			})
		}
	}
}

func TestSetPolicy(t *testing.T) {
	f := startAdmin(t)
	lan := Route{Env: "production", App: "lan", StableVersion: "v1", Stable: []Backend{{Addr: "10.0.0.5:80"}}}
	web := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}}}
	mustSetRoute(t, f.g, web)
	if err := f.g.SetRoute(lan); !errors.Is(err, ErrInvalidRoute) {
		t.Fatalf("SetRoute to a LAN backend under the default policy: %v, want ErrInvalidRoute", err)
	}

	for _, bad := range []string{`{"allowed":["10.0.0.0/33"]}`, `{"allowed":["lan"]}`, `{"reserved":["localhost:7070"]}`,
		`{"reserved":["127.0.0.1"]}`, `{"allowed":[],"extra":1}`, `{"allowed":"10.0.0.0/8"}`} {
		if status, body := f.do(t, http.MethodPut, "/policy", bad); status != http.StatusBadRequest {
			t.Errorf("PUT /policy %s = %d %s, want 400", bad, status, body)
		}
	}
	if p := f.g.Policy(); len(p.Allowed)+len(p.Reserved) != 0 {
		t.Fatalf("policy after refused changes = %+v, want the default", p)
	}

	status, body := f.do(t, http.MethodPut, "/policy", `{"allowed":["10.0.0.0/8"]}`)
	if status != http.StatusOK {
		t.Fatalf("PUT /policy = %d %s", status, body)
	}
	mustSetRoute(t, f.g, lan)

	// Narrowing: the LAN route goes, from the table and the state file.
	status, body = f.do(t, http.MethodPut, "/policy", `{"allowed":[],"reserved":["127.0.0.1:7070"]}`)
	var resp PolicyResponse
	if err := json.Unmarshal([]byte(body), &resp); status != http.StatusOK || err != nil {
		t.Fatalf("PUT /policy = %d %s (%v)", status, body, err)
	}
	if !reflect.DeepEqual(resp.Removed, []string{"production/lan"}) {
		t.Errorf("removed = %v, want [production/lan]", resp.Removed)
	}
	if got := f.g.Routes(); !reflect.DeepEqual(got, []Route{web}) {
		t.Errorf("routes = %+v, want only web", got)
	}
	if got := f.saved(t); !reflect.DeepEqual(got, []Route{web}) {
		t.Errorf("saved routes = %+v, want only web", got)
	}
	status, body = f.do(t, http.MethodGet, "/policy", "")
	if status != http.StatusOK || !strings.Contains(body, "127.0.0.1:7070") {
		t.Errorf("GET /policy = %d %s, want the reserved API address", status, body)
	}
}

// TestLoadRoutesDropsForbidden: routes saved under a wider policy are not
// served by a gateway started with a narrower one; the others are.
func TestLoadRoutesDropsForbidden(t *testing.T) {
	state := filepath.Join(t.TempDir(), "routes.json")
	wide := New(Options{Backends: BackendPolicy{Allowed: []string{"10.0.0.0/8"}}})
	lan := Route{Env: "production", App: "lan", StableVersion: "v1", Stable: []Backend{{Addr: "10.0.0.5:80"}}}
	web := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}}}
	mustSetRoute(t, wide, lan)
	mustSetRoute(t, wide, web)
	if err := wide.SaveRoutes(state); err != nil {
		t.Fatal(err)
	}
	narrow := New(Options{})
	if err := narrow.LoadRoutes(state); err != nil {
		t.Fatal(err)
	}
	if got := narrow.Routes(); !reflect.DeepEqual(got, []Route{web}) {
		t.Errorf("loaded routes = %+v, want only web", got)
	}
}

func TestParseBackendPolicy(t *testing.T) {
	tests := []struct {
		name string
		p    BackendPolicy
		ok   bool
	}{
		{name: "empty", ok: true},
		{name: "cidrs", p: BackendPolicy{Allowed: []string{"10.0.0.0/8", "192.168.0.0/16", "fd00::/8"}}, ok: true},
		{name: "host bits set", p: BackendPolicy{Allowed: []string{"10.1.2.3/8"}}, ok: true},
		{name: "reserved any host", p: BackendPolicy{Reserved: []string{":7070", "[::]:7070", "0.0.0.0:1"}}, ok: true},
		{name: "bare ip", p: BackendPolicy{Allowed: []string{"10.0.0.1"}}},
		{name: "bad mask", p: BackendPolicy{Allowed: []string{"10.0.0.0/40"}}},
		{name: "name", p: BackendPolicy{Allowed: []string{"lan"}}},
		{name: "reserved name", p: BackendPolicy{Reserved: []string{"localhost:7070"}}},
		{name: "reserved port 0", p: BackendPolicy{Reserved: []string{"127.0.0.1:0"}}},
		{name: "reserved without port", p: BackendPolicy{Reserved: []string{"127.0.0.1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParseBackendPolicy(tt.p)
			if (err == nil) != tt.ok {
				t.Errorf("ParseBackendPolicy(%+v) = %v, want ok %v", tt.p, err, tt.ok)
			}
		})
	}
}
