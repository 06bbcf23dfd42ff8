package nodeagent

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestBackOff is the restart back-off StartForTest uses unless told.
const TestBackOff = 500 * time.Millisecond

// StartForTest starts an agent for t and stops it, killing its pods'
// processes, when t ends. Unset options get test defaults: Dir a fresh
// directory under the system's temporary directory that other users can
// traverse (so that, run as root, pods run as nobody), removed at the
// end; BackOff TestBackOff.
func StartForTest(t testing.TB, o Options) *Agent {
	t.Helper()
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "runway-nodeagent-")
		if err != nil {
			t.Fatalf("nodeagent: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		o.Dir = dir
	}
	if o.BackOff == 0 {
		o.BackOff = TestBackOff
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("nodeagent: %v", err)
	}
	t.Cleanup(a.Stop)
	return a
}
