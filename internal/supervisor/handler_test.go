package supervisor

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Spec{ID: "env/app/v1/0", Command: []string{"/bin/app"}, LogPath: "/var/log/app", Addr: "127.0.0.1:8080",
		Readiness: &Probe{Path: "/healthz"}}
	tests := []struct {
		name    string
		change  func(*Spec)
		wantErr string
	}{
		{name: "valid", change: func(*Spec) {}},
		{name: "ipv6 loopback", change: func(s *Spec) { s.Addr = "[::1]:80" }},
		{name: "no addr without probes", change: func(s *Spec) { s.Addr, s.Readiness = "", nil }},
		{name: "empty id", change: func(s *Spec) { s.ID = "" }, wantErr: "id: empty"},
		{name: "long id", change: func(s *Spec) { s.ID = strings.Repeat("a", 201) }, wantErr: "at most 200"},
		{name: "id charset", change: func(s *Spec) { s.ID = "env/app v1" }, wantErr: "only letters"},
		{name: "id dot-dot", change: func(s *Spec) { s.ID = "env/../x" }, wantErr: "segment"},
		{name: "id trailing slash", change: func(s *Spec) { s.ID = "env/" }, wantErr: "segment"},
		{name: "group charset", change: func(s *Spec) { s.Group = "a?b" }, wantErr: "group"},
		{name: "no command", change: func(s *Spec) { s.Command = nil }, wantErr: "command"},
		{name: "relative command", change: func(s *Spec) { s.Command = []string{"app"} }, wantErr: "command[0]"},
		{name: "unclean command", change: func(s *Spec) { s.Command = []string{"/bin/../app"} }, wantErr: "command[0]"},
		{name: "NUL in argument", change: func(s *Spec) { s.Command = append(s.Command, "a\x00b") }, wantErr: "NUL"},
		{name: "env without =", change: func(s *Spec) { s.Env = []string{"A"} }, wantErr: "KEY=value"},
		{name: "relative dir", change: func(s *Spec) { s.Dir = "tmp" }, wantErr: "dir"},
		{name: "relative log", change: func(s *Spec) { s.LogPath = "log" }, wantErr: "logPath"},
		{name: "no log", change: func(s *Spec) { s.LogPath = "" }, wantErr: "logPath"},
		{name: "addr not loopback", change: func(s *Spec) { s.Addr = "10.0.0.1:80" }, wantErr: "loopback"},
		{name: "addr hostname", change: func(s *Spec) { s.Addr = "localhost:80" }, wantErr: "IP:port"},
		{name: "addr port 0", change: func(s *Spec) { s.Addr = "127.0.0.1:0" }, wantErr: "port"},
		{name: "probe without addr", change: func(s *Spec) { s.Addr = "" }, wantErr: "required by the probes"},
		{name: "probe path", change: func(s *Spec) { s.Readiness.Path = "healthz" }, wantErr: "readiness.path"},
		{name: "probe period", change: func(s *Spec) { s.Liveness = &Probe{Period: time.Nanosecond} }, wantErr: "liveness.period"},
		{name: "probe threshold", change: func(s *Spec) { s.Readiness.FailureThreshold = 1000 }, wantErr: "failureThreshold"},
		{name: "stop signal", change: func(s *Spec) { s.StopSignal = 99 }, wantErr: "stopSignal"},
		{name: "stop grace", change: func(s *Spec) { s.StopGrace = time.Hour }, wantErr: "stopGrace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := cloneSpec(ok)
			tt.change(&sp)
			err := Validate(sp)
			var ve *ValidationError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v", err)
			case tt.wantErr != "" && (!errors.As(err, &ve) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want a ValidationError with %q", err, tt.wantErr)
			}
		})
	}
}

func TestHandlerRejectsBadRequests(t *testing.T) {
	s := newSupervisor(t, Options{})
	h := Handler(s)
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantErr                  string
	}{
		{name: "unknown field", method: "PUT", path: "/v1/workloads/a", body: `{"command": ["/bin/true"], "logPath": "/tmp/l", "nope": 1}`,
			wantCode: 400, wantErr: "unknown field"},
		{name: "trailing data", method: "PUT", path: "/v1/workloads/a", body: `{"command": ["/bin/true"], "logPath": "/tmp/l"} {}`,
			wantCode: 400, wantErr: "data after"},
		{name: "too large", method: "PUT", path: "/v1/workloads/a", body: `{"command": ["/bin/true", "` + strings.Repeat("x", maxBody) + `"]}`,
			wantCode: 400, wantErr: "too large"},
		{name: "id mismatch", method: "PUT", path: "/v1/workloads/a", body: `{"id": "b", "command": ["/bin/true"], "logPath": "/tmp/l"}`,
			wantCode: 400, wantErr: "differs"},
		{name: "invalid spec", method: "PUT", path: "/v1/workloads/a", body: `{"command": ["true"], "logPath": "/tmp/l"}`,
			wantCode: 400, wantErr: "command[0]"},
		{name: "unknown workload", method: "GET", path: "/v1/workloads/nope", wantCode: 404, wantErr: "no such workload"},
		{name: "wait unknown", method: "POST", path: "/v1/workloads/nope/wait", wantCode: 404, wantErr: "no such workload"},
		{name: "wait bad timeout", method: "POST", path: "/v1/workloads/a/wait?timeout=11m", wantCode: 400, wantErr: "timeout"},
		{name: "unknown action", method: "POST", path: "/v1/workloads/a/start", wantCode: 404, wantErr: "no such action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantErr) {
				t.Fatalf("%s %s = %d %s, want %d with %q", tt.method, tt.path, rec.Code, rec.Body, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestClientRoundTrip drives a supervisor through Handler and Client over
// a real unix socket.
func TestClientRoundTrip(t *testing.T) {
	s := newSupervisor(t, Options{})
	dir, err := os.MkdirTemp("", "sv") // short: a unix socket path is limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/workloads", Handler(s))
	mux.Handle("/v1/workloads/", Handler(s))
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	c := NewClient(sock)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sp := servingSpec(t, "env/app/v1/0")
	if _, err := c.Apply(ctx, sp); err != nil {
		t.Fatal(err)
	}
	st, err := c.WaitReady(ctx, sp.ID)
	if err != nil || !st.Ready || st.PID == 0 || st.Addr != sp.Addr {
		t.Fatalf("WaitReady = %+v, %v", st, err)
	}
	if got, ok := c.Get(sp.ID); !ok || got.PID != st.PID {
		t.Errorf("Get = %+v, %v", got, ok)
	}
	if got := c.List("g"); len(got) != 1 || got[0].ID != sp.ID {
		t.Errorf("List(g) = %+v", got)
	}
	if got, err := c.ListContext(ctx, "other"); err != nil || len(got) != 0 {
		t.Errorf("List(other) = %+v, %v", got, err)
	}

	bad := sp
	bad.ID, bad.Command = "env/bad", []string{"relative"}
	var ve *ValidationError
	if _, err := c.Apply(ctx, bad); !errors.As(err, &ve) || !strings.Contains(err.Error(), "command[0]") {
		t.Errorf("Apply of an invalid spec = %v, want a ValidationError about command[0]", err)
	}

	crash := helperSpec(t, "env/crash", "EXIT_NOW=1", "EXIT_CODE=3")
	crash.Addr, crash.Readiness = freeAddr(t), &Probe{Path: "/healthz"}
	if _, err := c.Apply(ctx, crash); err != nil {
		t.Fatal(err)
	}
	var ee *ExitError
	if _, err := c.WaitReady(ctx, crash.ID); !errors.As(err, &ee) || !strings.Contains(err.Error(), "exit status 3") ||
		!strings.Contains(ee.LogTail, "helper exiting at once") {
		t.Errorf("WaitReady of a crashing workload = %v, want its exit status and log", err)
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer waitCancel()
	if _, err := c.WaitReady(waitCtx, "env/nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("WaitReady of an unknown workload = %v", err)
	}

	for _, id := range []string{sp.ID, crash.ID} {
		if err := c.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := c.GetContext(ctx, sp.ID); ok || err != nil {
		t.Errorf("Get after Remove = %v, %v", ok, err)
	}
	if _, _, err := NewClient(filepath.Join(dir, "absent")).GetContext(ctx, sp.ID); err == nil {
		t.Error("GetContext on a missing socket succeeded")
	}
}

func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(`{"id": "a", "command": ["/bin/true"], "logPath": "/tmp/l", "readiness": {"path": "/h"}}`))
	f.Add([]byte(`{"env": ["A=1"], "stopGrace": 5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sp, err := decodeSpec(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if Validate(sp) == nil && (len(sp.Command) == 0 || !strings.HasPrefix(sp.Command[0], "/")) {
			t.Fatalf("valid spec with command %q", sp.Command)
		}
	})
}
