package procfs

import (
	"os"
	"os/exec"
	"testing"
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

func TestRunningAndChildren(t *testing.T) {
	self, err := Read(os.Getpid())
	if err != nil || self.PPID != os.Getppid() || self.StartTime == 0 {
		t.Fatalf("own stat = %+v, %v", self, err)
	}
	if !Running(self.PID, self.StartTime) || Running(self.PID, self.StartTime+1) || Running(0, 0) {
		t.Fatal("Running does not tell this process from a PID reuse")
	}
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

func FuzzParse(f *testing.F) {
	f.Add("4242 (postgres) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1")
	f.Add("1 ()) R")
	f.Fuzz(func(t *testing.T, line string) {
		_, _ = Parse(line) // must not panic
	})
}
