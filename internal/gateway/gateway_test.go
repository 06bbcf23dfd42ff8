package gateway

import (
	"errors"
	"reflect"
	"testing"
)

func TestSetRouteValidation(t *testing.T) {
	ok := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8080"}}}
	tests := []struct {
		name   string
		change func(*Route)
		ok     bool
	}{
		{name: "valid", change: func(*Route) {}, ok: true},
		{name: "valid canary", change: func(r *Route) {
			r.CanaryVersion, r.Canary, r.CanaryWeight = "v2", []Backend{{Addr: "127.0.0.1:9"}}, 20
		}, ok: true},
		{name: "canary weight 100", change: func(r *Route) { r.CanaryVersion, r.CanaryWeight = "v2", 100 }, ok: true},
		{name: "no backends", change: func(r *Route) { r.Stable = nil }, ok: true},
		{name: "weight negative", change: func(r *Route) { r.CanaryVersion, r.CanaryWeight = "v2", -1 }},
		{name: "weight over 100", change: func(r *Route) { r.CanaryVersion, r.CanaryWeight = "v2", 101 }},
		{name: "weight without canary version", change: func(r *Route) { r.CanaryWeight = 10 }},
		{name: "empty app", change: func(r *Route) { r.App = "" }},
		{name: "empty env", change: func(r *Route) { r.Env = "" }},
		{name: "uppercase app", change: func(r *Route) { r.App = "Web" }},
		{name: "dot in env", change: func(r *Route) { r.Env = "a.b" }},
		{name: "underscore in app", change: func(r *Route) { r.App = "my_app" }},
		{name: "stable backends without version", change: func(r *Route) { r.StableVersion = "" }},
		{name: "canary backends without version", change: func(r *Route) { r.Canary = []Backend{{Addr: "127.0.0.1:1"}} }},
		{name: "backend without port", change: func(r *Route) { r.Stable = []Backend{{Addr: "127.0.0.1"}} }},
		{name: "backend port zero", change: func(r *Route) { r.Stable = []Backend{{Addr: "127.0.0.1:0"}} }},
		{name: "backend without host", change: func(r *Route) { r.Stable = []Backend{{Addr: ":8080"}} }},
		{name: "backend host name", change: func(r *Route) { r.Stable = []Backend{{Addr: "localhost:9"}} }},
		{name: "backend off loopback", change: func(r *Route) { r.Stable = []Backend{{Addr: "192.0.2.1:80"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Options{})
			r := ok.clone()
			tt.change(&r)
			err := g.SetRoute(r)
			if tt.ok {
				if err != nil {
					t.Fatalf("SetRoute: %v", err)
				}
				if _, found := g.Route(r.Env, r.App); !found {
					t.Fatal("route not set")
				}
				return
			}
			if !errors.Is(err, ErrInvalidRoute) {
				t.Fatalf("SetRoute error = %v, want ErrInvalidRoute", err)
			}
			if got := g.Routes(); len(got) != 0 {
				t.Errorf("invalid route changed the table: %+v", got)
			}
		})
	}
}

func TestSetCanaryWeight(t *testing.T) {
	tests := []struct {
		name     string
		env, app string
		weight   int
		wantErr  error
	}{
		{name: "set", env: "production", app: "web", weight: 50},
		{name: "zero", env: "production", app: "web", weight: 0},
		{name: "no such app", env: "production", app: "api", weight: 50, wantErr: ErrNoRoute},
		{name: "no such env", env: "v1", app: "web", weight: 50, wantErr: ErrNoRoute},
		{name: "out of range", env: "production", app: "web", weight: 101, wantErr: ErrInvalidRoute},
		{name: "no canary version", env: "production", app: "plain", weight: 10, wantErr: ErrInvalidRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Options{})
			mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", CanaryVersion: "v2", CanaryWeight: 20})
			mustSetRoute(t, g, Route{Env: "production", App: "plain", StableVersion: "v1"})
			err := g.SetCanaryWeight(tt.env, tt.app, tt.weight)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("SetCanaryWeight error = %v, want %v", err, tt.wantErr)
			}
			r, _ := g.Route("production", "web")
			want := tt.weight
			if tt.wantErr != nil {
				want = 20
			}
			if r.CanaryWeight != want {
				t.Errorf("CanaryWeight = %d, want %d", r.CanaryWeight, want)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	g := New(Options{})
	for _, r := range []Route{
		{Env: "v2", App: "web", StableVersion: "v2"},
		{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:1"}}},
		{Env: "v2", App: "db", StableVersion: "v2"},
		{Env: "production", App: "db", StableVersion: "v1"},
	} {
		mustSetRoute(t, g, r)
	}
	tests := []struct {
		name   string
		change func()
		want   []routeKey
	}{
		{name: "sorted", change: func() {}, want: []routeKey{{"production", "db"}, {"production", "web"}, {"v2", "db"}, {"v2", "web"}}},
		{name: "remove route", change: func() { g.RemoveRoute("production", "db") }, want: []routeKey{{"production", "web"}, {"v2", "db"}, {"v2", "web"}}},
		{name: "remove missing route", change: func() { g.RemoveRoute("nope", "db") }, want: []routeKey{{"production", "web"}, {"v2", "db"}, {"v2", "web"}}},
		{name: "remove env", change: func() { g.RemoveEnv("v2") }, want: []routeKey{{"production", "web"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change()
			var got []routeKey
			for _, r := range g.Routes() {
				got = append(got, routeKey{r.Env, r.App})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Routes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRouteIsACopy(t *testing.T) {
	g := New(Options{})
	in := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:1"}}}
	mustSetRoute(t, g, in)
	in.Stable[0].Addr = "127.0.0.1:2"
	out, _ := g.Route("production", "web")
	out.Stable[0].Addr = "127.0.0.1:3"
	got, _ := g.Route("production", "web")
	if got.Stable[0].Addr != "127.0.0.1:1" {
		t.Errorf("stored backend changed through a caller's slice: %q", got.Stable[0].Addr)
	}
}

func mustSetRoute(t testing.TB, g *Gateway, r Route) {
	t.Helper()
	if err := g.SetRoute(r); err != nil {
		t.Fatal(err)
	}
}
