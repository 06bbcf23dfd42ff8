package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseCPU(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		hz      int64
		want    time.Duration
		wantErr bool
	}{
		{
			name: "utime and stime",
			line: "4242 (runway) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 125 0 0 20 0 8 0 9001 0 0\n",
			hz:   100, want: 3750 * time.Millisecond,
		},
		{
			name: "command name with spaces and parentheses",
			line: "7 (nginx: worker (x) ) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0",
			hz:   100, want: 70 * time.Millisecond,
		},
		{name: "other USER_HZ", line: "1 (a) S 0 0 0 0 0 0 0 0 0 0 300 0 0 0", hz: 300, want: time.Second},
		{name: "too short", line: "1 (a) S 0 0", hz: 100, wantErr: true},
		{name: "no name", line: "1 a S", hz: 100, wantErr: true},
		{name: "not a number", line: "1 (a) S 0 0 0 0 0 0 0 0 0 0 x 0 0 0", hz: 100, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPU(tt.line, tt.hz)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseCPU: error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseCPU = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCPUTimeOfSelf(t *testing.T) {
	if clockTicks() <= 0 {
		t.Fatal("clockTicks not positive")
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Fatalf("cpuTime of this process: %v", err)
	}
}
