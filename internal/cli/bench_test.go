package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchCmd(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "help lists gateway", args: []string{"--help"}, wantOut: "gateway"},
		{name: "gateway help has the defaults", args: []string{"gateway", "--help"}, wantOut: `--nginx-workers string   nginx worker_processes: "auto"`},
		{name: "bad split", args: []string{"gateway", "--split", "100", "--runway", "/nonexistent"}, wantErr: "split 100"},
		{name: "bad duration", args: []string{"gateway", "--duration", "10ms"}, wantErr: "duration 10ms"},
		{name: "bad log level", args: []string{"gateway", "--log-level", "loud"}, wantErr: "--log-level"},
		{name: "backend refuses a public address", args: []string{"backend", "--listen", "0.0.0.0:0"}, wantErr: "exited with code 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := BenchCmd()
			var out, errb bytes.Buffer
			cmd.SetArgs(tt.args)
			cmd.SetOut(&out)
			cmd.SetErr(&errb)
			cmd.SilenceUsage = true
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q (stderr %s)", err, tt.wantErr, errb.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("%v (stderr %s)", err, errb.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output has no %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}
