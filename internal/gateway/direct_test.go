package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newDirect(t *testing.T) *Gateway {
	t.Helper()
	g := New(Options{DirectListeners: true})
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	return g
}

// plainGet is what a user's test does with RUNWAY_APP_URL.
func plainGet(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestDirectListener(t *testing.T) {
	v1, v2 := startBackend(t, "v1", http.StatusOK), startBackend(t, "v2", http.StatusOK)
	g := newDirect(t)
	mustSetRoute(t, g, Route{Env: "pr-7", App: "web", StableVersion: "v1", Stable: backends(v1)})
	r, _ := g.Route("pr-7", "web")
	if err := validateListen(r.Listen); err != nil || r.Listen == "" {
		t.Fatalf("Route.Listen = %q (%v), want a loopback address", r.Listen, err)
	}
	url := "http://" + r.Listen + "/"

	code, body, h := plainGet(t, url)
	if code != http.StatusOK || body != "v1" || h.Get(HeaderEnv) != "pr-7" || h.Get(HeaderVersion) != "v1" {
		t.Errorf("plain GET = %d %q env %q version %q, want 200 v1 pr-7 v1", code, body, h.Get(HeaderEnv), h.Get(HeaderVersion))
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = "other.example"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET with another Host = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.CommandContext(t.Context(), curl, "-sS", "--max-time", "10", url).Output()
		if err != nil || string(out) != "v1" {
			t.Errorf("curl %s = %q, %v; want v1", url, out, err)
		}
	} else {
		t.Log("no curl: skipping the curl check")
	}

	// Replacing the route, or changing its weight, keeps the address.
	mustSetRoute(t, g, Route{Env: "pr-7", App: "web", StableVersion: "v2", Stable: backends(v2),
		CanaryVersion: "v1", Canary: backends(v1)})
	if err := g.SetCanaryWeight("pr-7", "web", 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.Route("pr-7", "web"); got.Listen != r.Listen {
		t.Errorf("Listen after SetRoute = %q, want %q kept", got.Listen, r.Listen)
	}
	if _, body, _ := plainGet(t, url); body != "v2" {
		t.Errorf("after SetRoute: served %q, want v2", body)
	}

	// A backend on a direct listener would loop.
	err := g.SetRoute(Route{Env: "production", App: "loop", StableVersion: "v1", Stable: []Backend{{Addr: r.Listen}}})
	if !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("SetRoute with a direct listener as backend = %v, want ErrInvalidRoute", err)
	}

	g.RemoveRoute("pr-7", "web")
	if c, err := net.Dial("tcp", r.Listen); err == nil {
		c.Close()
		t.Errorf("direct listener %s still accepts after RemoveRoute", r.Listen)
	}
}

func TestDirectListenerValidation(t *testing.T) {
	g := newDirect(t)
	for _, addr := range []string{"192.0.2.1:8080", "localhost:8080", "127.0.0.1"} {
		err := g.SetRoute(Route{Env: "production", App: "web", Listen: addr})
		if !errors.Is(err, ErrInvalidRoute) {
			t.Errorf("SetRoute with Listen %q = %v, want ErrInvalidRoute", addr, err)
		}
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := g.SetRoute(Route{Env: "production", App: "web", Listen: taken.Addr().String()}); !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("SetRoute with a Listen address in use = %v, want ErrInvalidRoute", err)
	}
	if len(g.Routes()) != 0 {
		t.Errorf("rejected routes were set: %+v", g.Routes())
	}
	// Without the option routes have no listener.
	plain := New(Options{})
	mustSetRoute(t, plain, Route{Env: "production", App: "web", Listen: "127.0.0.1:1"})
	if r, _ := plain.Route("production", "web"); r.Listen != "" {
		t.Errorf("Listen without DirectListeners = %q, want empty", r.Listen)
	}
}

// TestDirectListenerPersists: a restarted gateway listens for the route
// where the last one did, or elsewhere when that port was taken meanwhile.
func TestDirectListenerPersists(t *testing.T) {
	b := startBackend(t, "web", http.StatusOK)
	state := filepath.Join(t.TempDir(), "routes.json")
	first := New(Options{DirectListeners: true})
	mustSetRoute(t, first, Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(b)})
	mustSetRoute(t, first, Route{Env: "staging", App: "web", StableVersion: "v1", Stable: backends(b)})
	if err := first.SaveRoutes(state); err != nil {
		t.Fatal(err)
	}
	prod, _ := first.Route("production", "web")
	staging, _ := first.Route("staging", "web")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", staging.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	second := newDirect(t)
	if err := second.LoadRoutes(state); err != nil {
		t.Fatal(err)
	}
	got, _ := second.Route("production", "web")
	if got.Listen != prod.Listen {
		t.Errorf("Listen after restart = %q, want %q", got.Listen, prod.Listen)
	}
	if _, body, _ := plainGet(t, "http://"+got.Listen+"/"); body != "web" {
		t.Errorf("after restart: served %q, want web", body)
	}
	moved, _ := second.Route("staging", "web")
	if moved.Listen == "" || moved.Listen == staging.Listen {
		t.Errorf("Listen of the route whose port was taken = %q, want a new address", moved.Listen)
	}
	if code, _, _ := plainGet(t, "http://"+moved.Listen+"/"); code != http.StatusOK {
		t.Errorf("moved direct listener answered %d", code)
	}
	if !strings.HasPrefix(moved.Listen, "127.0.0.1:") {
		t.Errorf("moved Listen = %q, want on 127.0.0.1", moved.Listen)
	}
}

// TestServeDirectListeners: a gateway process gives routes set over its
// admin socket a direct listener, keeps it across a restart, and closes it
// when it stops.
func TestServeDirectListeners(t *testing.T) {
	b := startBackend(t, "web", http.StatusOK)
	dir := t.TempDir()
	o := ServeOptions{Listen: "127.0.0.1:0", Admin: filepath.Join(dir, "admin.sock"), StatePath: filepath.Join(dir, "routes.json")}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- Serve(ctx, o) }()
		stop = func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		client := unixClient(o.Admin)
		t.Cleanup(client.CloseIdleConnections)
		for i := 0; ; i++ { // until the admin socket answers, bounded
			resp, err := client.Get("http://gateway/healthz")
			if err == nil {
				resp.Body.Close()
				return stop
			}
			if i == 500 {
				stop()
				t.Fatalf("gateway admin socket never answered: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	route := func() Route {
		t.Helper()
		resp, err := unixClient(o.Admin).Get("http://gateway/routes/production/web")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Route
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	stop := run()
	req, _ := http.NewRequest(http.MethodPut, "http://gateway/routes/production/web",
		strings.NewReader(`{"StableVersion":"v1","Stable":[{"Addr":"`+b.addr+`"}]}`))
	resp, err := unixClient(o.Admin).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT route: %v %v", resp, err)
	}
	resp.Body.Close()
	first := route()
	if _, body, _ := plainGet(t, "http://"+first.Listen+"/"); body != "web" {
		t.Errorf("direct listener served %q, want web", body)
	}
	stop()
	if c, err := net.Dial("tcp", first.Listen); err == nil {
		c.Close()
		t.Errorf("direct listener %s still accepts after Serve returned", first.Listen)
	}

	stop = run()
	defer stop()
	if again := route(); again.Listen != first.Listen {
		t.Errorf("Listen after restart = %q, want %q", again.Listen, first.Listen)
	}
	if _, body, _ := plainGet(t, "http://"+first.Listen+"/"); body != "web" {
		t.Errorf("direct listener after restart served %q, want web", body)
	}
}
