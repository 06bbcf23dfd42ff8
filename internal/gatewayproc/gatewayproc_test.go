package gatewayproc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
	"github.com/runway-cd/runway/internal/procfs"
)

// gatewayBin is the test gateway program built by TestMain.
var gatewayBin string

func TestMain(m *testing.M) {
	dialIfAsked()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gatewayproc-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gatewayBin = filepath.Join(dir, "gw")
	build := exec.Command("go", "build", "-o", gatewayBin, "./testdata/gwmain")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test gateway:", err)
		return 1
	}
	return m.Run()
}

// options returns Options for a gateway whose files are in a new temp dir.
func options(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	return Options{
		Logger:     slog.New(slog.NewTextHandler(t.Output(), nil)),
		Command:    []string{gatewayBin},
		StatePath:  filepath.Join(dir, "routes.json"),
		RecordPath: filepath.Join(dir, "gateway.json"),
		LogPath:    filepath.Join(dir, "gateway.log"),
	}
}

// ensure calls Ensure and stops the gateway when the test ends, even if it
// fails.
func ensure(t *testing.T, o Options) *Handle {
	t.Helper()
	h, err := Ensure(t.Context(), o)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return h
}

// watch runs h.Watch until the test ends and delivers each restart gap.
func watch(t *testing.T, h *Handle) <-chan time.Duration {
	t.Helper()
	gaps := make(chan time.Duration, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Watch(ctx, func(gap time.Duration) { gaps <- gap })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return gaps
}

func backend(t *testing.T, answer string) gateway.Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return gateway.Backend{Addr: srv.Listener.Addr().String()}
}

// get sends GET / with Host host to the gateway at addr.
func get(t *testing.T, addr, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET through gateway %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// started counts the gateway processes that have written to the log.
func started(t *testing.T, logPath string) int {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "gateway listening")
}

// gone reports whether pid no longer names a live process.
func gone(pid int) bool {
	st, err := procfs.Read(pid)
	return err != nil || st.Exited()
}

// hangGuard bounds a wait so a broken test fails instead of hanging; it is
// not a performance bound.
const hangGuard = 60 * time.Second

func TestGatewaySurvivesKill(t *testing.T) {
	o := options(t)
	h := ensure(t, o)
	client := remote.New(h.AdminSocket(), "")
	r := gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{backend(t, "pong")}}
	if err := client.SetRoute(r); err != nil {
		t.Fatalf("SetRoute: %v", err)
	}
	host := client.Host("production", "web")
	if code, body := get(t, h.ListenAddr(), host); code != http.StatusOK || body != "pong" {
		t.Fatalf("GET through gateway = %d %q, want 200 pong", code, body)
	}

	gaps := watch(t, h)
	oldPID, listen := h.PID(), h.ListenAddr()
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case gap := <-gaps:
		t.Logf("gateway restart gap after kill -9: %v", gap)
	case <-time.After(hangGuard):
		t.Fatal("Watch did not restart the killed gateway")
	}
	if h.PID() == oldPID {
		t.Errorf("PID after restart = %d, the killed process's", oldPID)
	}
	if h.ListenAddr() != listen {
		t.Errorf("listen address after restart = %s, want %s", h.ListenAddr(), listen)
	}
	if code, body := get(t, listen, host); code != http.StatusOK || body != "pong" {
		t.Errorf("GET through restarted gateway = %d %q, want 200 pong", code, body)
	}
	if got, ok := client.Route("production", "web"); !ok || got.StableVersion != "v1" {
		t.Errorf("route after restart = %+v, %v; want the route set before", got, ok)
	}
	rec, err := readRecord(o.RecordPath)
	if err != nil || rec.PID != h.PID() {
		t.Errorf("record after restart = %+v (%v), want PID %d", rec, err, h.PID())
	}
	if n := started(t, o.LogPath); n != 2 {
		t.Errorf("%d gateway processes started, want 2", n)
	}
}

func TestEnsureAdopts(t *testing.T) {
	o := options(t)
	first := ensure(t, o)
	client := remote.New(first.AdminSocket(), "")
	if err := client.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{backend(t, "pong")}}); err != nil {
		t.Fatal(err)
	}
	second := ensure(t, o)
	if second.PID() != first.PID() {
		t.Errorf("second Ensure PID = %d, want the running gateway's %d", second.PID(), first.PID())
	}
	if second.ListenAddr() != first.ListenAddr() || second.AdminSocket() != first.AdminSocket() || second.MetricsURL() != first.MetricsURL() {
		t.Errorf("adopted addresses %s %s %s, want %s %s %s", second.ListenAddr(), second.AdminSocket(), second.MetricsURL(),
			first.ListenAddr(), first.AdminSocket(), first.MetricsURL())
	}
	if n := started(t, o.LogPath); n != 1 {
		t.Errorf("%d gateway processes started, want 1", n)
	}
	if code, body := get(t, second.ListenAddr(), "web.localhost"); code != http.StatusOK || body != "pong" {
		t.Errorf("GET through adopted gateway = %d %q", code, body)
	}

	// Watch of an adopted gateway, which is not its child, restarts it too.
	gaps := watch(t, second)
	pid := second.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case gap := <-gaps:
		t.Logf("adopted gateway restart gap after kill -9: %v", gap)
	case <-time.After(hangGuard):
		t.Fatal("Watch did not restart the killed adopted gateway")
	}
	if code, body := get(t, second.ListenAddr(), "web.localhost"); code != http.StatusOK || body != "pong" {
		t.Errorf("GET through restarted gateway = %d %q", code, body)
	}
}

func TestEnsureDoesNotAdoptStale(t *testing.T) {
	tests := []struct {
		name string
		// record writes the record, given a live unrelated process.
		record func(t *testing.T, path string, other *exec.Cmd)
		// wantOtherAlive says whether the unrelated process must survive.
		wantOtherAlive bool
	}{
		{name: "pid reused", wantOtherAlive: true, record: func(t *testing.T, path string, other *exec.Cmd) {
			st, err := procfs.Read(other.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			writeTestRecord(t, path, Record{PID: other.Process.Pid, StartTime: st.StartTime + 1, Listen: freeAddr(t), Admin: filepath.Join(t.TempDir(), "admin.sock"), Metrics: freeAddr(t)})
		}},
		{name: "dead pid", wantOtherAlive: true, record: func(t *testing.T, path string, _ *exec.Cmd) {
			dead := exec.Command("true")
			if err := dead.Run(); err != nil {
				t.Fatal(err)
			}
			writeTestRecord(t, path, Record{PID: dead.Process.Pid, StartTime: 1, Listen: freeAddr(t), Admin: filepath.Join(t.TempDir(), "admin.sock"), Metrics: freeAddr(t)})
		}},
		{name: "malformed", wantOtherAlive: true, record: func(t *testing.T, path string, _ *exec.Cmd) {
			if err := os.WriteFile(path, []byte(`{"pid":`), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "recorded process does not answer", wantOtherAlive: false, record: func(t *testing.T, path string, other *exec.Cmd) {
			st, err := procfs.Read(other.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			// The admin socket this Ensure wants, so only the health
			// check can tell it is no gateway.
			admin := filepath.Join(filepath.Dir(path), "admin.sock")
			writeTestRecord(t, path, Record{PID: other.Process.Pid, StartTime: st.StartTime, Listen: freeAddr(t), Admin: admin, Metrics: freeAddr(t)})
		}},
		{name: "gateway from before the admin socket", wantOtherAlive: false, record: func(t *testing.T, path string, other *exec.Cmd) {
			st, err := procfs.Read(other.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			writeTestRecord(t, path, Record{PID: other.Process.Pid, StartTime: st.StartTime, Listen: freeAddr(t), Admin: freeAddr(t)})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := exec.Command("sleep", "300")
			if err := other.Start(); err != nil {
				t.Fatal(err)
			}
			otherDone := make(chan struct{})
			go func() { other.Wait(); close(otherDone) }()
			t.Cleanup(func() {
				other.Process.Kill()
				<-otherDone
			})
			o := options(t)
			tt.record(t, o.RecordPath, other)
			h := ensure(t, o)
			if h.PID() == other.Process.Pid {
				t.Fatalf("Ensure adopted process %d of a stale record", h.PID())
			}
			if n := started(t, o.LogPath); n != 1 {
				t.Errorf("%d gateway processes started, want 1", n)
			}
			if rec, err := readRecord(o.RecordPath); err != nil || rec.PID != h.PID() {
				t.Errorf("record = %+v (%v), want the new gateway %d", rec, err, h.PID())
			}
			select {
			case <-otherDone:
				if tt.wantOtherAlive {
					t.Error("Ensure ended an unrelated process named by a stale record")
				}
			default:
				if !tt.wantOtherAlive {
					t.Error("Ensure left the recorded process that did not answer running")
				}
			}
		})
	}
}

func TestStop(t *testing.T) {
	o := options(t)
	h := ensure(t, o)
	pid, listen, admin := h.PID(), h.ListenAddr(), h.AdminSocket()
	metrics := strings.TrimSuffix(strings.TrimPrefix(h.MetricsURL(), "http://"), "/metrics")
	if err := h.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !gone(pid) {
		t.Errorf("gateway process %d still runs after Stop", pid)
	}
	if _, err := os.Stat(o.RecordPath); !os.IsNotExist(err) {
		t.Errorf("record still there after Stop (stat: %v)", err)
	}
	if _, err := os.Lstat(admin); !os.IsNotExist(err) {
		t.Errorf("admin socket still there after Stop (lstat: %v)", err)
	}
	for _, addr := range []string{listen, metrics} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("port %s still taken after Stop: %v", addr, err)
			continue
		}
		l.Close()
	}
	if err := h.Stop(t.Context()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopAdopted(t *testing.T) {
	o := options(t)
	first := ensure(t, o)
	second := ensure(t, o)
	pid := first.PID()
	if err := second.Stop(t.Context()); err != nil {
		t.Fatalf("Stop of adopted gateway: %v", err)
	}
	if !gone(pid) {
		t.Errorf("adopted gateway %d still runs after Stop", pid)
	}
}

func TestEnsureFixedAddresses(t *testing.T) {
	o := options(t)
	o.Listen, o.Metrics, o.AdminSocket = freeAddr(t), freeAddr(t), filepath.Join(t.TempDir(), "a.sock")
	h := ensure(t, o)
	if h.ListenAddr() != o.Listen || h.AdminSocket() != o.AdminSocket || h.MetricsURL() != "http://"+o.Metrics+"/metrics" {
		t.Errorf("addresses = %s %s %s, want %s %s %s", h.ListenAddr(), h.AdminSocket(), h.MetricsURL(), o.Listen, o.AdminSocket, o.Metrics)
	}
	// Asking for other addresses replaces the recorded gateway.
	moved := o
	moved.Listen = freeAddr(t)
	h2 := ensure(t, moved)
	if h2.PID() == h.PID() || h2.ListenAddr() != moved.Listen {
		t.Errorf("Ensure on new address: PID %d (was %d), listen %s, want a new gateway on %s", h2.PID(), h.PID(), h2.ListenAddr(), moved.Listen)
	}
	if !gone(h.PID()) {
		t.Errorf("replaced gateway %d still runs", h.PID())
	}
}

func TestEnsureStartFailure(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{name: "no command", edit: func(o *Options) { o.Command = nil }},
		{name: "missing program", edit: func(o *Options) { o.Command = []string{filepath.Join(t.TempDir(), "absent")} }},
		{name: "program exits", edit: func(o *Options) { o.Command = []string{"false"} }},
		{name: "corrupt state", edit: func(o *Options) {
			if err := os.WriteFile(o.StatePath, []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options(t)
			tt.edit(&o)
			h, err := Ensure(t.Context(), o)
			if err == nil {
				h.Stop(context.Background())
				t.Fatal("Ensure succeeded")
			}
			t.Logf("Ensure: %v", err)
			if _, statErr := os.Stat(o.RecordPath); !os.IsNotExist(statErr) {
				t.Errorf("failed Ensure left a record (stat: %v)", statErr)
			}
		})
	}
}

func writeTestRecord(t *testing.T, path string, r Record) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := chooseAddr("")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
