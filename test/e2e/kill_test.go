package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/test/harness"
)

// killPoint is one kill -9 of the control plane and what came after.
type killPoint struct {
	at        string        // where the pipeline was
	recovered time.Duration // from the kill to the API listing production again
}

// TestKillControlPlane runs the demo's changes with "runway serve" as a
// process of its own and kills it with SIGKILL after each pipeline step
// starts, at each canary weight and while a rollout is being aborted, then
// starts it again. A healthy change (json-pong) must still succeed with
// production answering every probe (one every 50 ms); a failing canary
// (flaky-500) must still be aborted and reverted, with only the canary's
// own answers failing. Nothing may be left that no environment explains.
func TestKillControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	events := &logEvents{ch: make(chan string, 256)}
	h, dir, _ := startRunwayWith(ctx, t, harness.Options{Process: true, Log: events})

	stable := deployFirstVersion(ctx, t, h)
	stableAddrs := replicaAddrs(ctx, h, manifest.ProductionEnv)

	p, kills, counts, loadCounts := killChange(ctx, t, h, events, "json-pong", "ping answers JSON", killAndRespawn)
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s ended %s at %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
	}
	if len(kills) < 12 {
		t.Errorf("only %d kill points were reached, want at least 12", len(kills))
	}
	for k, n := range merge(counts, loadCounts) {
		if !strings.HasSuffix(k, "/200") {
			t.Errorf("%d production requests answered %s during the kills", n, k)
		}
	}
	if counts[p.Version+"/200"] == 0 || counts[stable+"/200"] == 0 {
		t.Errorf("probes did not see both versions: %v", counts)
	}
	assertProduction(ctx, t, h, `{"value":"pong"}`, p.Version)
	assertGitProduction(ctx, t, h, p.Version)
	assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	assertOnlyExplained(t, h, p.Version, stableAddrs)
	if t.Failed() {
		return
	}

	// A canary meant to fail (30% of its answers are 500s), killed along
	// the way and while it is being aborted: the abort must still complete,
	// and the only failed requests are the canary's own.
	stable = p.Version
	p, kills, counts, loadCounts = killChange(ctx, t, h, events, "flaky-500", "ping answers JSON, sometimes 500", killAndRespawn)
	if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitRollout || !strings.Contains(p.Reason, "analysis") {
		t.Fatalf("pipeline %s ended %s at %q (%s), want Failed at %s by the analysis", p.ID, p.Phase, p.FailedStep, p.Reason, pipeline.StepAwaitRollout)
	}
	if !slices.ContainsFunc(kills, func(k killPoint) bool { return strings.HasPrefix(k.at, "rollout aborting") }) {
		t.Errorf("no kill while the rollout was being aborted: %+v", kills)
	}
	for k, n := range merge(counts, loadCounts) {
		if !strings.HasSuffix(k, "/200") && k != p.Version+"/500" {
			t.Errorf("%d production requests answered %s: only the failing canary may fail", n, k)
		}
	}
	assertProduction(ctx, t, h, `{"value":"pong"}`, stable)
	assertGitProduction(ctx, t, h, stable)
	assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	assertOnlyExplained(t, h, stable, nil)
}

// killChange commits a change overlay, pushes it and follows its pipeline
// with killAlong, under a 50 ms prober and load beside it (the canary's
// analysis wants 10 canary requests a minute before it judges; a prober
// alone gives a canary at 20% about 4 a second, fewer than that across a
// kill and a restart). It logs the kills, probe counts and recovery times.
func killChange(ctx context.Context, t *testing.T, h *harness.Harness, events *logEvents, change, msg string, kill killFunc) (*pipeline.Pipeline, []killPoint, map[string]int, map[string]int) {
	t.Helper()
	sha, err := h.CommitChange(ctx, change, msg)
	if err != nil {
		t.Fatal(err)
	}
	for len(events.ch) > 0 {
		<-events.ch // earlier pipelines'
	}
	resp, err := h.Push(ctx, "main", sha, msg)
	if err != nil || resp.Status != 202 {
		t.Fatalf("push: %+v, %v", resp, err)
	}
	traffic := h.StartTrafficEvery(ctx, 50*time.Millisecond, 15*time.Minute)
	load := h.StartTrafficEvery(ctx, 20*time.Millisecond, 15*time.Minute)
	kills, p := killAlong(ctx, t, h, resp.Pipeline, events.ch, kill)
	counts, loadCounts := traffic.Stop(), load.Stop()

	var recoveries []time.Duration
	var b strings.Builder
	for i, k := range kills {
		recoveries = append(recoveries, k.recovered)
		fmt.Fprintf(&b, "  kill %2d  %-52s back in %s\n", i+1, k.at, k.recovered.Round(time.Millisecond))
	}
	slices.Sort(recoveries)
	sent, failed := 0, 0
	for k, n := range counts {
		sent += n
		if !strings.HasSuffix(k, "/200") {
			failed += n
		}
	}
	var med, worst time.Duration
	if len(recoveries) > 0 {
		med, worst = median(recoveries), recoveries[len(recoveries)-1]
	}
	t.Logf("kill test, change %s: pipeline %s; %d kills; probes sent %d, failed %d (%v); load %v; recovery median %s, max %s\n%s",
		change, p.Phase, len(kills), sent, failed, counts, loadCounts, med.Round(time.Millisecond), worst.Round(time.Millisecond), b.String())
	return p, kills, counts, loadCounts
}

func merge(a, b map[string]int) map[string]int {
	out := maps.Clone(a)
	for k, n := range b {
		out[k] += n
	}
	return out
}

// logEvents turns the control plane's log into kill points: a step
// starting, a canary weight being set. The log says so the moment it
// happens, sooner than polling the API could see it.
type logEvents struct {
	mu   sync.Mutex
	part []byte
	ch   chan string
}

func (l *logEvents) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		line := string(l.part[:i])
		l.part = l.part[i+1:]
		ev := ""
		switch {
		case strings.Contains(line, `msg="step started"`):
			ev = "step " + logValue(line, "step") + " started"
		case strings.Contains(line, `msg="canary weight set"`):
			ev = "canary at weight " + logValue(line, "weight") + "%"
		case strings.Contains(line, `msg="aborting rollout"`):
			ev = "rollout aborting"
		}
		if ev != "" {
			select {
			case l.ch <- ev:
			default:
			}
		}
	}
	return len(b), nil
}

// logValue is the value of key in a slog text line.
func logValue(line, key string) string {
	_, v, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// killAlong follows pipeline id and kills the control plane once at each
// kill point first seen in its log (each step's start, each canary
// weight), restarting it every time; it returns the kills and the
// pipeline's end. Points seen again after a restart (a resumed step
// starts again) are not killed twice.
func killAlong(ctx context.Context, t *testing.T, h *harness.Harness, id string, events <-chan string, kill killFunc) ([]killPoint, *pipeline.Pipeline) {
	t.Helper()
	seen := map[string]bool{}
	var kills []killPoint
	deadline := time.Now().Add(12 * time.Minute)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for time.Now().Before(deadline) {
		select {
		case ev := <-events:
			if seen[ev] {
				continue
			}
			seen[ev] = true
			kills = append(kills, kill(ctx, t, h, ev))
		case <-poll.C:
			p, err := h.Pipeline(ctx, id)
			if err != nil {
				t.Fatalf("reading pipeline %s: %v", id, err)
			}
			if p.Phase == pipeline.Succeeded || p.Phase == pipeline.Failed {
				return kills, p
			}
		}
	}
	t.Fatalf("pipeline %s did not end within 12 minutes", id)
	return nil, nil
}

// killFunc kills a part of Runway at kill point at and returns once it is
// back.
type killFunc func(ctx context.Context, t *testing.T, h *harness.Harness, at string) killPoint

// killAndRespawn kills the control plane, starts it again and waits until
// its API lists production's replicas.
func killAndRespawn(ctx context.Context, t *testing.T, h *harness.Harness, at string) killPoint {
	t.Helper()
	start := time.Now()
	if err := h.Kill(); err != nil {
		t.Fatalf("kill at %s: %v", at, err)
	}
	if err := h.Respawn(ctx); err != nil {
		t.Fatalf("restart after the kill at %s: %v", at, err)
	}
	for i := 0; len(replicaAddrs(ctx, h, manifest.ProductionEnv)) == 0; i++ {
		if i == 1200 {
			t.Fatalf("after the kill at %s the control plane never listed production", at)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return killPoint{at: at, recovered: time.Since(start)}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)/2]
}

// assertOnlyExplained checks that what runs is what the one remaining
// environment, production at version, explains: its data dir alone, its
// replicas all of version, one PostgreSQL server, and the old stable
// version's ports closed.
func assertOnlyExplained(t *testing.T, h *harness.Harness, version string, oldAddrs []string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.WorkDir(), "envs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != manifest.ProductionEnv {
			t.Errorf("data dir of environment %q remains", e.Name())
		}
	}
	replicas, postgres := 0, 0
	envsDir := []byte(filepath.Join(h.WorkDir(), "envs") + "/")
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join(p, "environ"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		switch {
		case bytes.Contains(environ, []byte("RUNWAY_ENV=")) && strings.HasPrefix(cwd, h.WorkDir()+"/"):
			replicas++
			if !bytes.Contains(environ, []byte("RUNWAY_ENV=production\x00")) || !bytes.Contains(environ, []byte("RUNWAY_VERSION="+version+"\x00")) {
				t.Errorf("process %s is not production at %s: %s", filepath.Base(p), version, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
		case filepath.Base(string(argv0)) == "postgres" && bytes.Contains(cmdline, envsDir):
			pid, _ := strconv.Atoi(filepath.Base(p))
			if st, err := procfs.Read(pid); err == nil && !forkedBackend(st, cmdline) {
				postgres++
			}
		}
	}
	if replicas == 0 {
		t.Error("no production replica process found")
	}
	if postgres != 1 {
		t.Errorf("%d PostgreSQL servers run for this Runway, want 1 (production's)", postgres)
	}
	for _, a := range oldAddrs {
		if harness.Listening(a) {
			t.Errorf("the old stable version's replica port %s still listens", a)
		}
	}
}

// TestKillDataPlane is TestKillControlPlane's twin for the data plane: the
// gateway-and-supervisor process is killed with SIGKILL after each step of
// a healthy change starts and at each canary weight (teardown included).
// The control plane starts a new one, which adopts the replicas and
// databases the killed one ran. The change must still succeed, and
// afterwards nothing may run that no environment explains. Probes may
// fail while no gateway runs; that gap is measured by TestGatewayKilled.
func TestKillDataPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	events := &logEvents{ch: make(chan string, 256)}
	h, dir, _ := startRunwayWith(ctx, t, harness.Options{Log: events})
	stable := deployFirstVersion(ctx, t, h)
	stableAddrs := replicaAddrs(ctx, h, manifest.ProductionEnv)

	p, kills, counts, _ := killChange(ctx, t, h, events, "json-pong", "ping answers JSON", killDataPlane)
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s ended %s at %s: %s; the step's log ends:\n%s", p.ID, p.Phase, p.FailedStep, p.Reason, stepTail(p))
	}
	if len(kills) < 8 {
		t.Errorf("only %d kill points were reached, want at least 8", len(kills))
	}
	if !slices.ContainsFunc(kills, func(k killPoint) bool { return strings.Contains(k.at, "teardown") }) {
		t.Errorf("no kill during the staging teardown: %+v", kills)
	}
	if counts[p.Version+"/200"] == 0 || counts[stable+"/200"] == 0 {
		t.Errorf("probes did not see both versions: %v", counts)
	}
	assertProduction(ctx, t, h, `{"value":"pong"}`, p.Version)
	assertGitProduction(ctx, t, h, p.Version)
	assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	assertOnlyExplained(t, h, p.Version, stableAddrs)
}

// killDataPlane kills the data-plane process and waits until its
// successor (started by the control plane) serves production again.
func killDataPlane(ctx context.Context, t *testing.T, h *harness.Harness, at string) killPoint {
	t.Helper()
	start := time.Now()
	killed, err := h.KillGateway()
	if err != nil {
		t.Fatalf("kill at %s: %v", at, err)
	}
	waitGatewayRecord(t, h, killed.PID)
	for i := 0; ; i++ {
		if status, _, _, err := h.Get(ctx, h.ProductionHost(), "/ping"); err == nil && status == 200 {
			break
		}
		if i == 1200 {
			t.Fatalf("after the kill at %s production never answered again", at)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return killPoint{at: at, recovered: time.Since(start)}
}
