package gateway

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// adminOps are the admin API's changing requests, chosen by the fuzzer.
var adminOps = []struct{ method, path string }{
	{http.MethodPut, "/routes/%s/%s"},
	{http.MethodPost, "/routes/%s/%s/weight"},
	{http.MethodPut, "/policy"},
	{http.MethodDelete, "/routes/%s/%s"},
	{http.MethodDelete, "/envs/%s"},
}

// FuzzAdminRoute sends arbitrary bodies to the admin API's changing routes.
// The handler must not panic, must answer 2xx or 4xx only, and an answer
// of 4xx must leave the route table, the backend policy and the state file
// as they were.
func FuzzAdminRoute(f *testing.F) {
	seeds := []struct {
		op       uint8
		env, app string
		body     string
	}{
		{0, "production", "web", `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}]}`},
		{0, "production", "web", `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8081"}],"CanaryVersion":"v2","Canary":[{"Addr":"[::1]:8082"}],"CanaryWeight":20}`},
		{0, "production", "web", `{"StableVersion":"v1","Stable":[{"Addr":"10.0.0.1:80"}]}`},
		{0, "production", "web", `{"StableVersion":"v1","Stable":[{"Addr":"localhost:80"}]}`},
		{0, "production", "web", `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:8080"}]}`},
		{0, "production", "web", `{"StableVersion":"v1","Stable":[{"Addr":"127.0.0.1:70000"}]}`},
		{0, "production", "web", `{"Env":"staging","App":"web"}`},
		{0, "production", "WEB", `{}`},
		{0, "production", "web", `{"StableVersion":`},
		{0, "production", "web", `{} {}`},
		{0, "production", "web", `null`},
		{0, "production", "web", `[]`},
		{0, "production", "web", `{"Stable":null,"CanaryWeight":-1}`},
		{1, "production", "web", `{"weight":50}`},
		{1, "production", "web", `{"weight":101}`},
		{1, "production", "api", `{"weight":10}`},
		{1, "production", "web", `{"weight":1e400}`},
		{2, "", "", `{"allowed":["10.0.0.0/8"],"reserved":["127.0.0.1:7070"]}`},
		{2, "", "", `{"allowed":["0.0.0.0/0"]}`},
		{2, "", "", `{"allowed":["10.0.0.0/33"]}`},
		{2, "", "", `{"reserved":["[::]:8081"]}`},
		{3, "production", "web", ``},
		{4, "production", "", ``},
	}
	for _, s := range seeds {
		f.Add(s.op, s.env, s.app, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, op uint8, env, app string, body []byte) {
		o := adminOps[int(op)%len(adminOps)]
		path := o.path
		switch o.path {
		case "/routes/%s/%s":
			path = "/routes/" + url.PathEscape(env) + "/" + url.PathEscape(app)
		case "/routes/%s/%s/weight":
			path = "/routes/" + url.PathEscape(env) + "/" + url.PathEscape(app) + "/weight"
		case "/envs/%s":
			path = "/envs/" + url.PathEscape(env)
		}
		req, err := http.NewRequest(o.method, "http://gateway"+path, bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request URL")
		}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "admin.sock", Net: "unix"}))

		g := New(Options{Self: "127.0.0.1:8080"})
		mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: "127.0.0.1:8081"}},
			CanaryVersion: "v2", Canary: []Backend{{Addr: "127.0.0.1:8082"}}})
		state := filepath.Join(t.TempDir(), "routes.json")
		routes, policy := g.Routes(), g.Policy()

		rec := httptest.NewRecorder()
		g.AdminHandler(state).ServeHTTP(rec, req)
		code := rec.Code
		if code/100 != 2 && code/100 != 4 {
			t.Fatalf("%s %s %q = %d %s, want 2xx or 4xx", o.method, path, body, code, rec.Body)
		}
		if code/100 != 4 {
			return
		}
		if got := g.Routes(); !reflect.DeepEqual(got, routes) {
			t.Errorf("%s %s %q = %d but changed the routes to %+v", o.method, path, body, code, got)
		}
		if got := g.Policy(); !reflect.DeepEqual(got, policy) {
			t.Errorf("%s %s %q = %d but changed the policy to %+v", o.method, path, body, code, got)
		}
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Errorf("%s %s %q = %d but wrote the state file (stat: %v)", o.method, path, body, code, err)
		}
	})
}
