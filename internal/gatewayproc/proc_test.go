package gatewayproc

import (
	"os"
	"os/exec"
	"testing"
)

func TestRunning(t *testing.T) {
	self, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
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
		{name: "self", pid: os.Getpid(), start: self.startTime, want: true},
		{name: "self with another start time", pid: os.Getpid(), start: self.startTime + 1},
		{name: "exited", pid: dead.Process.Pid, start: self.startTime},
		{name: "zero pid", pid: 0},
		{name: "negative pid", pid: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := running(tt.pid, tt.start); got != tt.want {
				t.Errorf("running(%d, %d) = %v, want %v", tt.pid, tt.start, got, tt.want)
			}
		})
	}
}
