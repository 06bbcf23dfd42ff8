package gateway

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSaveLoadRoutes(t *testing.T) {
	prod := Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}},
		CanaryVersion: "v2", Canary: []Backend{{Addr: "127.0.0.1:8082"}}, CanaryWeight: 20}
	staging := Route{Env: "v20240101000000", App: "web", StableVersion: "v2", Stable: []Backend{{Addr: "127.0.0.1:8083"}}}
	tests := []struct {
		name   string
		routes []Route
	}{
		{name: "empty", routes: []Route{}},
		{name: "one", routes: []Route{prod}},
		{name: "several", routes: []Route{prod, staging}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "routes.json")
			g := New(Options{})
			for _, r := range tt.routes {
				mustSetRoute(t, g, r)
			}
			if err := g.SaveRoutes(path); err != nil {
				t.Fatalf("SaveRoutes: %v", err)
			}
			loaded := New(Options{})
			mustSetRoute(t, loaded, Route{Env: "old", App: "gone"})
			if err := loaded.LoadRoutes(path); err != nil {
				t.Fatalf("LoadRoutes: %v", err)
			}
			if got, want := loaded.Routes(), g.Routes(); !reflect.DeepEqual(got, want) {
				t.Errorf("loaded routes = %+v, want %+v", got, want)
			}
			entries, err := os.ReadDir(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("directory holds %d files, want only the routes file (temp file left behind?)", len(entries))
			}
		})
	}
}

func TestSaveRoutesReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.json")
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "a"})
	if err := g.SaveRoutes(path); err != nil {
		t.Fatal(err)
	}
	g.RemoveRoute("production", "a")
	mustSetRoute(t, g, Route{Env: "production", App: "b"})
	if err := g.SaveRoutes(path); err != nil {
		t.Fatal(err)
	}
	loaded := New(Options{})
	if err := loaded.LoadRoutes(path); err != nil {
		t.Fatal(err)
	}
	if got := loaded.Routes(); len(got) != 1 || got[0].App != "b" {
		t.Errorf("loaded routes = %+v, want only b", got)
	}
}

func TestLoadRoutesMissingFile(t *testing.T) {
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web"})
	if err := g.LoadRoutes(filepath.Join(t.TempDir(), "absent.json")); err != nil {
		t.Fatalf("LoadRoutes of a missing file: %v", err)
	}
	if got := g.Routes(); len(got) != 0 {
		t.Errorf("routes after loading a missing file = %+v, want none", got)
	}
}

func TestLoadRoutesMalformed(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantErr string
	}{
		{name: "empty file", content: "", wantErr: "decoding"},
		{name: "truncated", content: `[{"Env":"production","App":"web"`, wantErr: "decoding"},
		{name: "not an array", content: `{"Env":"production"}`, wantErr: "decoding"},
		{name: "null", content: `null`, wantErr: "null"},
		{name: "trailing data", content: `[] []`, wantErr: "after"},
		{name: "invalid route", content: `[{"Env":"production","App":"Web"}]`, wantErr: "invalid route"},
		{name: "bad weight", content: `[{"Env":"production","App":"web","CanaryWeight":150,"CanaryVersion":"v2"}]`, wantErr: "invalid route"},
		{name: "duplicate", content: `[{"Env":"production","App":"web"},{"Env":"production","App":"web"}]`, wantErr: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "routes.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			g := New(Options{})
			keep := Route{Env: "production", App: "keep", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:1"}}}
			mustSetRoute(t, g, keep)
			err := g.LoadRoutes(path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadRoutes error = %v, want one naming %s and containing %q", err, path, tt.wantErr)
			}
			if got := g.Routes(); !reflect.DeepEqual(got, []Route{keep}) {
				t.Errorf("routes after a failed load = %+v, want unchanged", got)
			}
		})
	}
}

func TestSaveRoutesUnwritableDir(t *testing.T) {
	g := New(Options{})
	err := g.SaveRoutes(filepath.Join(t.TempDir(), "no", "such", "dir", "routes.json"))
	if err == nil {
		t.Fatal("SaveRoutes into a missing directory succeeded")
	}
}
