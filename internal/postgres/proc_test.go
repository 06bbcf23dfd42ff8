package postgres

import (
	"os"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr bool
	}{
		{
			name: "postgres",
			line: "4242 (postgres) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3",
			want: procStat{pid: 4242, state: 'S', ppid: 1, startTime: 987654},
		},
		{
			name: "command with spaces and parens",
			line: "7 (a) b (c) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0",
			want: procStat{pid: 7, state: 'R', ppid: 3, startTime: 55},
		},
		{name: "no command", line: "7 a R 3", wantErr: true},
		{name: "bad pid", line: "x (a) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0", wantErr: true},
		{name: "truncated", line: "7 (a) R 3 7", wantErr: true},
		{name: "bad start time", line: "7 (a) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseProcStat err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("parseProcStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProcStartTimeOfSelf(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.pid != os.Getpid() || st.ppid != os.Getppid() || st.startTime == 0 {
		t.Fatalf("own stat = %+v, want ppid %d and a start time", st, os.Getppid())
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("4242 (postgres) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1")
	f.Add("1 ()) R")
	f.Fuzz(func(t *testing.T, line string) {
		_, _ = parseProcStat(line) // must not panic
	})
}
