package dataplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
	"github.com/runway-cd/runway/internal/supervisor"
)

// TestMain lets this test binary be the supervised replica: with
// DATAPLANE_TEST_SERVE set it serves "A" on that address, and /healthz
// answers 503 while the file $UNREADY exists.
func TestMain(m *testing.M) {
	if addr := os.Getenv("DATAPLANE_TEST_SERVE"); addr != "" {
		unready := os.Getenv("UNREADY")
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if _, err := os.Stat(unready); err == nil {
				http.Error(w, "unready", http.StatusServiceUnavailable)
			}
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "A") })
		if err := http.ListenAndServe(addr, mux); err != nil {
			os.Exit(3)
		}
		return
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestReadinessReachesThePool runs a data plane with its supervisor, a
// route over a supervised replica (A) and a plain server (B), and checks
// that the supervisor's readiness probes decide the gateway's pool: while
// A fails its probe every request goes to B, and once it passes again A
// gets its share back. Nothing but the supervisor tells the gateway.
func TestReadinessReachesThePool(t *testing.T) {
	dir, err := os.MkdirTemp("", "dp") // short: a unix socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithCancel(context.Background())
	listen, sock := freeAddr(t), filepath.Join(dir, "admin.sock")
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, Options{
			ServeOptions: gateway.ServeOptions{Listen: listen, Admin: sock, StatePath: filepath.Join(dir, "routes.json"),
				Options: gateway.Options{Domain: "localhost"}},
			SuperviseState: filepath.Join(dir, "workloads.json"),
		})
	}()
	sv := supervisor.NewClient(sock)
	t.Cleanup(func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		_ = sv.Remove(rctx, "production/web/v1/0")
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for i := 0; ; i++ {
		if _, err := sv.ListContext(ctx, ""); err == nil {
			break
		}
		if i == 500 {
			t.Fatal("the data plane's admin socket never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addrA, unready := freeAddr(t), filepath.Join(dir, "unready")
	spec := supervisor.Spec{ID: "production/web/v1/0", Group: "production", Command: []string{exe},
		Env: []string{"DATAPLANE_TEST_SERVE=" + addrA, "UNREADY=" + unready}, LogPath: filepath.Join(dir, "a.log"), Addr: addrA,
		Readiness: &supervisor.Probe{Path: "/healthz", Period: 20 * time.Millisecond, FailureThreshold: 1}}
	if _, err := sv.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if _, err := sv.WaitReady(wctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvB := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "B") })}
	go func() { _ = srvB.Serve(lnB) }()
	t.Cleanup(func() { srvB.Close() })
	gw := remote.New(sock, "localhost")
	if err := gw.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1",
		Stable: []gateway.Backend{{Addr: addrA}, {Addr: lnB.Addr().String()}}}); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	answers := func(n int) map[string]int {
		t.Helper()
		out := map[string]int{}
		for range n {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/", nil)
			req.Host = "web.localhost"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out[string(b)]++
		}
		return out
	}
	awaitReady := func(want bool) {
		t.Helper()
		for i := 0; ; i++ {
			if st, ok, err := sv.GetContext(ctx, spec.ID); err == nil && ok && st.Ready == want {
				return
			}
			if i == 1000 {
				t.Fatalf("replica A never became ready=%v", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if got := answers(20); got["A"] == 0 || got["B"] == 0 {
		t.Fatalf("both replicas ready: answers %v, want both A and B", got)
	}
	if err := os.WriteFile(unready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	awaitReady(false)
	if got := answers(20); got["A"] != 0 || got["B"] != 20 {
		t.Fatalf("A failing readiness: answers %v, want all 20 from B", got)
	}
	if err := os.Remove(unready); err != nil {
		t.Fatal(err)
	}
	awaitReady(true)
	if got := answers(20); got["A"] == 0 {
		t.Fatalf("A ready again: answers %v, want A back in the pool", got)
	}
}
