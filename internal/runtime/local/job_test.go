package local

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// TestRunJobEndsWhatItLeaves: a job whose command exits 0 while a process
// it started runs on (a test script's background server) succeeds at once,
// and that process ends with it. Before, RunJob waited 5s for the
// leftover's output pipe, failed with "WaitDelay expired", and left the
// process running.
func TestRunJobEndsWhatItLeaves(t *testing.T) {
	rt := newRuntime(t)
	var log bytes.Buffer
	err := rt.RunJob(t.Context(), runtime.Job{Env: "jobs", Name: "tests", Dir: t.TempDir(),
		Command: []string{"sh", "-c", "sleep 300 & echo leftover $!"}, Log: &log})
	if err != nil {
		t.Fatalf("RunJob: %v; log %q", err, log.String())
	}
	var pid int
	if _, err := fmt.Sscanf(strings.TrimSpace(log.String()), "leftover %d", &pid); err != nil {
		t.Fatalf("log = %q", log.String())
	}
	if !exited(pid) {
		t.Errorf("the job's background process %d still runs after RunJob returned", pid)
	}
}
