package procfs

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Stat
		wantErr bool
	}{
		{name: "plain", line: "4242 (postgres) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3", want: Stat{PID: 4242, State: 'S', PPID: 1, StartTime: 987654}},
		{name: "command with spaces and parens", line: "7 (a) b (c) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0", want: Stat{PID: 7, State: 'R', PPID: 3, StartTime: 55}},
		{name: "no command", line: "7 a R 3", wantErr: true},
		{name: "bad pid", line: "x (a) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0", wantErr: true},
		{name: "truncated", line: "7 (a) R 3 7", wantErr: true},
		{name: "bad start time", line: "7 (a) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.line)
			if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
				t.Fatalf("Parse = %+v, %v; want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRunning(t *testing.T) {
	self, err := Read(os.Getpid())
	if err != nil || self.PPID != os.Getppid() || self.StartTime == 0 {
		t.Fatalf("own stat = %+v, %v", self, err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		pid   int
		start uint64
		want  bool
	}{
		{name: "self", pid: self.PID, start: self.StartTime, want: true},
		{name: "self with another start time (a reused PID)", pid: self.PID, start: self.StartTime + 1},
		{name: "exited", pid: dead.Process.Pid, start: self.StartTime},
		{name: "zero pid", pid: 0},
		{name: "negative pid", pid: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Running(tt.pid, tt.start); got != tt.want {
				t.Errorf("Running(%d, %d) = %v, want %v", tt.pid, tt.start, got, tt.want)
			}
		})
	}
}

func TestChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := false
	for _, k := range Children(os.Getpid()) {
		found = found || k.PID == cmd.Process.Pid
	}
	if !found {
		t.Fatalf("child %d not among Children", cmd.Process.Pid)
	}
}

// Signal reaches the process it names and nothing that merely has its
// PID; AwaitExit sees it go.
func TestSignalAndAwaitExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-waited })
	st, err := Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := Signal(st.PID, st.StartTime+1, syscall.SIGKILL); err != nil {
		t.Fatalf("Signal with another start time: %v", err)
	}
	if !Running(st.PID, st.StartTime) {
		t.Fatal("Signal with another start time reached the process")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if AwaitExit(ctx, st.PID, st.StartTime, 5*time.Millisecond) {
		t.Fatal("AwaitExit reported a running process gone")
	}
	if err := Signal(st.PID, st.StartTime, syscall.SIGKILL); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	<-waited
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if !AwaitExit(ctx, st.PID, st.StartTime, 5*time.Millisecond) {
		t.Fatal("AwaitExit did not see the killed process go")
	}
	if err := Signal(st.PID, st.StartTime, syscall.SIGKILL); err != nil {
		t.Fatalf("Signal to a process that has gone: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("4242 (postgres) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1")
	f.Add("1 ()) R")
	f.Fuzz(func(t *testing.T, line string) {
		_, _ = Parse(line) // must not panic
	})
}

// WaitChildExit returns once the child exited and leaves it unreaped: its
// /proc entry is still there (a zombie) until Wait reaps it.
func TestWaitChildExit(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	WaitChildExit(pid)
	st, err := Read(pid)
	if err != nil || !st.Exited() {
		t.Errorf("after WaitChildExit the child is %+v, %v; want an unreaped zombie", st, err)
	}
	if err := cmd.Wait(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("Wait = %v (exit %d), want exit status 3", err, cmd.ProcessState.ExitCode())
	}
}
