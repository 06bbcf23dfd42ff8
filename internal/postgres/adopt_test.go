package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/procfs"
)

func TestAdoptRunningInstance(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "env")
	started := startInstance(t, dir)
	first, err := started.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}

	inst, err := Adopt(ctx, testConfig(t, dir), dir)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	t.Cleanup(func() { _ = inst.Remove(context.Background()) })
	if inst.PID() != started.PID() || inst.Port() != started.Port() || inst.Dir() != dir {
		t.Fatalf("adopted pid %d port %d dir %s, want pid %d port %d dir %s",
			inst.PID(), inst.Port(), inst.Dir(), started.PID(), started.Port(), dir)
	}
	conn, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase on the adopted instance: %v", err)
	}
	if conn != first {
		t.Fatalf("EnsureDatabase on the adopted instance = %+v, want %+v: the password survives adoption", conn, first)
	}
	if got := queryAsApp(t, conn); got != "pong" {
		t.Fatalf("query through the adopted instance = %q, want pong", got)
	}

	pid, port := inst.PID(), inst.Port()
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st, err := procfs.Read(pid); err == nil && st.State != 'Z' {
		t.Fatalf("postmaster %d still runs after Stop (state %c)", pid, st.State)
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		c.Close()
		t.Fatalf("port %d still listens after Stop", port)
	}
	if _, err := Adopt(ctx, testConfig(t, dir), dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt of a stopped instance: err = %v, want ErrNotRunning", err)
	}
	if err := inst.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir after Remove: stat err = %v, want not exist", err)
	}
}

func TestAdoptRefuses(t *testing.T) {
	// A live process that is not a server: its pid stands for a reused one.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
	})
	sleeperStat, err := procfs.Read(sleeper.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		rec  *record // nil: no instance.json
	}{
		{name: "no record"},
		{name: "reused pid", rec: &record{PID: sleeper.Process.Pid, Port: 1, StartTime: sleeperStat.StartTime + 1}},
		{name: "dead pid", rec: &record{PID: dead.Process.Pid, Port: 1, StartTime: 1}},
		{name: "no start time", rec: &record{PID: sleeper.Process.Pid, Port: 1}},
		// Alive with the right start time but not a server that answers.
		{name: "not accepting connections", rec: &record{PID: sleeper.Process.Pid, Port: 1, SocketDir: t.TempDir(), StartTime: sleeperStat.StartTime}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.rec != nil {
				b, err := json.Marshal(tt.rec)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, recordFile), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			inst, err := Adopt(t.Context(), testConfig(t, dir), dir)
			if !errors.Is(err, ErrNotRunning) {
				if inst != nil {
					_ = inst.Stop(context.Background())
				}
				t.Fatalf("Adopt: err = %v, want ErrNotRunning", err)
			}
			if err := syscall.Kill(sleeper.Process.Pid, 0); err != nil {
				t.Fatalf("the unrelated process was signalled away: %v", err)
			}
			if st, err := procfs.Read(sleeper.Process.Pid); err != nil || st.State == 'Z' {
				t.Fatalf("the unrelated process no longer runs: %+v %v", st, err)
			}
		})
	}
}
