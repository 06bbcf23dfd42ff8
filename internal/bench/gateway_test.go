package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// TestBenchGatewaySmoke runs the whole benchmark once, briefly: this test
// binary stands in for the runway binary (TestMain). It checks that every
// target was measured and the report is complete, not how fast anything
// was.
func TestBenchGatewaySmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the smoke test starts wrk, nginx, a gateway and two backends")
	}
	for name, find := range map[string]func(context.Context, bool, *slog.Logger) (string, error){"wrk": findWrk, "nginx": findNginx} {
		if _, err := find(context.Background(), false, slog.Default()); err != nil {
			t.Skipf("%s is not installed (apt-get install -y %s): %v", name, name, err)
		}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Gateway(ctx, GatewayOptions{Rounds: 1, Duration: time.Second, Warmup: -1, Connections: 8, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 3 || len(rep.Summary) != 3 {
		t.Fatalf("%d runs and %d summaries, want 3 and 3: %+v", len(rep.Runs), len(rep.Summary), rep)
	}
	for _, r := range rep.Runs {
		if r.Wrk.Requests == 0 || r.Wrk.RequestsPerSec == 0 || r.Wrk.P99 == 0 {
			t.Errorf("%s: no requests measured: %+v", r.Target, r.Wrk)
		}
		if r.Wrk.SocketErrors+r.Wrk.Non2xx > 0 {
			t.Errorf("%s: %d socket errors, %d non-2xx", r.Target, r.Wrk.SocketErrors, r.Wrk.Non2xx)
		}
		if r.Target == TargetDirect {
			if r.BackendRequests[1] != 0 || r.BackendRequests[0] == 0 {
				t.Errorf("direct: backend requests %v, want all on the first", r.BackendRequests)
			}
			continue
		}
		if r.BackendRequests[0] == 0 || r.BackendRequests[1] == 0 {
			t.Errorf("%s: backend requests %v, want both backends used", r.Target, r.BackendRequests)
		}
		if r.ProxyCPU <= 0 {
			t.Errorf("%s: proxy CPU %s, want some", r.Target, r.ProxyCPU)
		}
	}
	if rep.GatewayToNginx.RequestsPerSec == 0 || rep.GatewayToDirect.RequestsPerSec == 0 {
		t.Errorf("ratios missing: %+v %+v", rep.GatewayToNginx, rep.GatewayToDirect)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"direct", "gateway", "nginx", "median", "gateway/nginx"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table has no %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())
	path := filepath.Join(dir, "report.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	var back Report
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &back); err != nil || len(back.Runs) != 3 {
		t.Fatalf("JSON report does not read back: %v, %d runs", err, len(back.Runs))
	}
	assertNoChildren(t)
}

// assertNoChildren fails if a process the benchmark started still runs.
func assertNoChildren(t *testing.T) {
	t.Helper()
	for _, c := range procfs.Children(os.Getpid()) {
		if !c.Exited() {
			t.Errorf("process %d left running", c.PID)
		}
	}
}
