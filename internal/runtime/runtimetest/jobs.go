package runtimetest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// testRunJob: a job runs to completion with its output in its Log; a
// non-zero exit is an error, a job past its Timeout is ended, and only the
// allow-listed variables and the job's own reach it.
func (s *suite) testRunJob(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	tests := []struct {
		name    string
		args    []string
		timeout time.Duration
		wantErr string // "": success
		assert  func(t *testing.T, log string)
	}{
		{
			name: "exit 0 succeeds, its output in the log, with its own variables only",
			args: []string{"job"},
			assert: func(t *testing.T, log string) {
				env := jobEnv(log)
				if !hasVar(env, greeting) {
					t.Errorf("the job lacks its variable %s; has %q", greeting, env)
				}
				if hasVar(env, hostSecret) {
					t.Errorf("the job got the control plane's %s", hostSecret)
				}
				if !strings.Contains(log, "done\n") {
					t.Errorf("log = %q, want the job's last line", log)
				}
			},
		},
		{
			name:    "a non-zero exit is an error",
			args:    []string{"job", "-exit=3"},
			wantErr: "exit status 3",
			assert: func(t *testing.T, log string) {
				if !strings.Contains(log, "done\n") {
					t.Errorf("log = %q, want the output of the failed job", log)
				}
			},
		},
		{
			name:    "a job past its timeout is ended, with what it started",
			args:    []string{"job", "-spawn", "-sleep=1h"},
			timeout: 500 * time.Millisecond,
			wantErr: "timed out",
			assert: func(t *testing.T, log string) {
				if strings.Contains(log, "done\n") {
					t.Errorf("log = %q: the job ran to its end", log)
				}
				s.assertJobGone(t, log)
			},
		},
		{
			name: "what a job leaves running ends with it",
			args: []string{"job", "-spawn"},
			assert: func(t *testing.T, log string) {
				s.assertJobGone(t, log)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			err := rt.RunJob(ctx, runtime.Job{
				Env: "env-a", App: "web", Name: "tests", Dir: s.h.Program.Dir, Command: s.command(tt.args...),
				Vars: []string{greeting}, Log: &log, Timeout: tt.timeout,
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("RunJob: %v; log:\n%s", err, log.String())
			case tt.wantErr != "" && err == nil:
				t.Fatalf("RunJob succeeded, want an error saying %q; log:\n%s", tt.wantErr, log.String())
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("RunJob error %q does not say %q", err, tt.wantErr)
			}
			tt.assert(t, log.String())
		})
	}
}

// jobEnv is the environment a job of testapp printed ("ENV k=v" lines).
func jobEnv(log string) []string {
	var env []string
	for line := range strings.SplitSeq(log, "\n") {
		if kv, ok := strings.CutPrefix(line, "ENV "); ok {
			env = append(env, kv)
		}
	}
	return env
}

// assertJobGone checks, when the harness can tell, that neither the job
// whose log this is nor the child it started ("child pid N") still runs.
func (s *suite) assertJobGone(t *testing.T, log string) {
	t.Helper()
	var pid, child int
	if _, err := fmt.Sscanf(log, "pid %d\nchild pid %d", &pid, &child); err != nil {
		t.Fatalf("log = %q: no pid lines", log)
	}
	if s.h.ProcessAlive == nil {
		return
	}
	if s.h.ProcessAlive(pid) {
		t.Errorf("the job's process %d still runs", pid)
	}
	if s.h.ProcessAlive(child) {
		t.Errorf("the process %d the job started still runs after RunJob returned", child)
	}
}
