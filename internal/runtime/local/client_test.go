package local

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/supervisor"
)

// TestRuntimeOverSupervisorClient runs the runtime against a supervisor
// it reaches over a unix socket, as the data plane's: replicas start,
// restart and stop through it, a restarted control plane adopts them, and
// closing the runtime leaves them running.
func TestRuntimeOverSupervisorClient(t *testing.T) {
	ctx := t.Context()
	base, err := os.MkdirTemp("", "rw-sup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	sup, err := supervisor.New(ctx, supervisor.Options{StatePath: filepath.Join(base, "supervisor.json"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: supervisor.Handler(sup)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = sup.StopAll(context.Background())
		sup.Close()
		_ = srv.Close()
	})
	dir := filepath.Join(base, "envs")
	newRT := func() *Runtime {
		rt, err := New(Options{Dir: dir, SecretsDir: secretsFor(dir), Logger: log, Supervisor: supervisor.NewClient(sock)})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rt := newRT()

	started, err := rt.Start(ctx, testReplicaSet("production", "v1", 2))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := sup.List("production"); len(got) != 2 || got[0].ID != "production/web/v1/0" || got[1].PID != started[1].PID {
		t.Fatalf("the supervisor runs %+v, want the two replicas", got)
	}
	if err := syscall.Kill(started[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !eventually(time.Minute, func() bool {
		st := rt.Status("production", "web", "v1")
		return len(st) == 2 && st[0].Restarts == 1 && st[0].Ready
	}) {
		t.Fatalf("Status = %+v, want replica 0 restarted", rt.Status("production", "web", "v1"))
	}

	// A control plane restart: the runtime detaches, the supervisor goes
	// on running the set and the next runtime adopts it.
	rt.Detach()
	if got := sup.List("production"); len(got) != 2 {
		t.Fatalf("Detach with a given supervisor stopped replicas: %+v", got)
	}
	rt = newRT()
	rep, err := rt.Adopt(ctx)
	if err != nil || len(rep.Adopted) != 2 || !strings.HasPrefix(rep.Adopted[0], "production/web/v1#0 pid ") {
		t.Fatalf("Adopt = %+v, %v; want both replicas adopted", rep, err)
	}
	if got := mustVersions(t, rt, "production", "web"); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("Versions = %v", got)
	}
	if err := rt.Stop(ctx, "production", "web", "v1"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := sup.List(""); len(got) != 0 {
		t.Fatalf("the supervisor still runs %+v after Stop", got)
	}
	if err := rt.Destroy(ctx, "production"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}

	// Close (a data plane stopped with the control plane) stops what the
	// given supervisor runs for the runtime.
	if _, err := rt.Start(ctx, testReplicaSet("production", "v2", 1)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := sup.List(""); len(got) != 0 {
		t.Fatalf("the supervisor still runs %+v after Close", got)
	}
}
