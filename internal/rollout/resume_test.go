package rollout

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/manifest"
)

// memCheckpoints keeps checkpoints in memory. The SQLite store that keeps
// them in Runway is tested in internal/store/sqlite; it cannot be used
// here (it imports this package).
type memCheckpoints struct {
	mu    sync.Mutex
	saved map[string]Checkpoint
	order []string
}

func (m *memCheckpoints) SaveRollout(_ context.Context, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.saved == nil {
		m.saved = map[string]Checkpoint{}
	}
	k := cp.Env + "/" + cp.App + "/" + cp.CanaryVersion
	if _, ok := m.saved[k]; !ok {
		m.order = append(m.order, k)
	}
	cp.Analyses = slices.Clone(cp.Analyses)
	m.saved[k] = cp
	return nil
}

func (m *memCheckpoints) UnfinishedRollouts(_ context.Context, env, app string) ([]Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Checkpoint
	for _, k := range m.order {
		if cp := m.saved[k]; cp.Env == env && cp.App == app && !cp.Done() {
			out = append(out, cp)
		}
	}
	return out, nil
}

func (m *memCheckpoints) get(canary string) Checkpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saved[env+"/"+app+"/"+canary]
}

// restart stands in for a control plane killed and started again: the
// running controller is stopped as a shutdown stops it (leaving its
// rollout where it was), and a new one with the same store, gateway and
// repository takes over.
func (fx *fixture) restart(t *testing.T, cps Checkpoints, stop context.CancelFunc, outcomes []Outcome) {
	t.Helper()
	stop()
	fx.ctl.Wait()
	select {
	case <-fx.done: // the interrupted rollout's goroutine ended
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupted rollout did not stop")
	}
	fx.analyzer = &scriptedAnalyzer{outcomes: outcomes}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	fx.ctl = New(fx.router, fx.analyzer, fx.repo, fx.reporter, func() { fx.done <- struct{}{} }, log)
	fx.ctl.canaryCheck = testCanaryCheck
	fx.ctl.Persist(t.Context(), cps)
}

// startWith is start with a cancel of its own (the "kill").
func (fx *fixture) startWith(t *testing.T, req Request) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); fx.ctl.Wait() })
	if err := fx.ctl.Start(ctx, req); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return cancel
}

// waitPausedAt waits until the rollout pauses at step.
func (fx *fixture) waitPausedAt(t *testing.T, step int) Status {
	t.Helper()
	for range 3000 {
		if s, ok := fx.ctl.Active(env, app); ok && s.Phase == Paused && s.Step == step {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("rollout never paused at step %d: %+v", step, fx.ctl.List())
	return Status{}
}

func (fx *fixture) request(t *testing.T, steps string) Request {
	return Request{
		Env: env, App: app, Workflow: workflow,
		StableVersion: stableVersion, Stable: fx.stable, StableEntry: stableEntry(t),
		CanaryVersion: canaryVersion,
		Artifact:      build.Artifact{App: app, Version: canaryVersion, Kind: build.App, Spec: parseSpec(t, steps)},
		Target:        fx.target,
	}
}

func TestResumeAtPausedStepAndWeight(t *testing.T) {
	fx := newFixture(t, nil)
	cps := &memCheckpoints{}
	fx.ctl.Persist(t.Context(), cps)
	req := fx.request(t, "      - setWeight: 20\n      - pause: {}\n      - setWeight: 60\n      - pause: {}\n")
	stop := fx.startWith(t, req)
	if s := fx.waitPaused(t); s.Step != 1 || s.Weight != 20 {
		t.Fatalf("before the restart: step %d weight %d, want step 1 weight 20", s.Step, s.Weight)
	}

	// The stable entry a restarted environment controller passes has no
	// git revision; the checkpoint's has.
	req.StableEntry = &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "web", Tag: stableVersion}}}
	fx.restart(t, cps, stop, nil)
	before := len(fx.router.seen())
	fx.startWith(t, req)
	s := fx.waitPaused(t)
	if s.Step != 1 || s.Weight != 20 {
		t.Fatalf("after the restart: step %d weight %d, want step 1 weight 20", s.Step, s.Weight)
	}
	if rt, _ := fx.router.Route(env, app); rt.CanaryWeight != 20 || len(rt.Canary) == 0 {
		t.Fatalf("route after the restart: weight %d, %d canary backends; want 20 and the canary", rt.CanaryWeight, len(rt.Canary))
	}
	if got := fx.router.seen()[before:]; len(got) != 0 {
		t.Fatalf("weights set again on resume: %v", got)
	}
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	if s := fx.waitPausedAt(t, 3); s.Weight != 60 {
		t.Fatalf("weight %d at step 3, want 60", s.Weight)
	}
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	if end := fx.wait(t); end.Phase != Healthy {
		t.Fatalf("phase %s (%s), want Healthy", end.Phase, end.Message)
	}
	if cp := cps.get(canaryVersion); !cp.Done() || cp.Phase != Healthy || cp.StableEntry.Deploy.Revision != "57ab1e" {
		t.Fatalf("checkpoint at the end: done %v phase %s stable entry %+v", cp.Done(), cp.Phase, cp.StableEntry)
	}
}

func TestResumeContinuesAnalysisRun(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	cps := &memCheckpoints{}
	fx.ctl.Persist(t.Context(), cps)
	req := fx.request(t, "      - setWeight: 30\n      - analysis: {templates: [{templateName: rate}]}\n      - setWeight: 70\n")
	stop := fx.startWith(t, req)
	var first AnalysisRequest
	for range 3000 {
		if calls := fx.analyzer.calls(); len(calls) == 1 {
			first = calls[0]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if first.Name == "" || first.Resume {
		t.Fatalf("first analysis request %+v: want a fresh named run", first)
	}
	fx.restart(t, cps, stop, nil)
	fx.startWith(t, req)
	if end := fx.wait(t); end.Phase != Healthy {
		t.Fatalf("phase %s (%s), want Healthy", end.Phase, end.Message)
	}
	calls := fx.analyzer.calls()
	if len(calls) != 1 || calls[0].Name != first.Name || !calls[0].Resume {
		t.Fatalf("analysis after the restart: %+v; want run %s resumed", calls, first.Name)
	}
	if w := fx.router.seen(); !slices.Equal(w[len(w)-2:], []int{70, 100}) {
		t.Fatalf("weights %v, want ... 70 100", w)
	}
}

func TestResumeFinishesAnAbort(t *testing.T) {
	fx := newFixture(t, nil)
	cps := &memCheckpoints{}
	fx.ctl.Persist(t.Context(), cps)
	req := fx.request(t, "      - setWeight: 50\n      - pause: {}\n")
	// Killed after the abort began: traffic was on stable, git not yet
	// reverted, the pipeline not yet told.
	cp := Checkpoint{
		Status:      Status{Env: env, App: app, StableVersion: stableVersion, CanaryVersion: canaryVersion, Phase: Degraded, Step: 1, Steps: 2, Started: time.Now().UTC()},
		Workflow:    workflow,
		StableEntry: stableEntry(t),
		Aborting:    "analysis rate Failed: success rate 0.4",
	}
	if err := cps.SaveRollout(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	fx.startWith(t, req)
	end := fx.wait(t)
	if end.Phase != Degraded || !strings.Contains(end.Message, "success rate 0.4") {
		t.Fatalf("phase %s (%s), want Degraded with the stored reason", end.Phase, end.Message)
	}
	if _, aborted := fx.target.calls(); aborted != 1 {
		t.Fatalf("canary stopped %d times, want 1", aborted)
	}
	ups := fx.reporter.all()
	if len(ups) != 1 || ups[0].Success || ups[0].Workflow != workflow {
		t.Fatalf("reports %+v, want one failure for %s", ups, workflow)
	}
	if got, _ := fx.production(t); got.Version() != stableVersion || got.Deploy.Revision != "57ab1e" {
		t.Fatalf("production manifest has %s (revision %q), want the stable entry back", got.Version(), got.Deploy.Revision)
	}
}

func TestSettleEndsUnfinishedRollouts(t *testing.T) {
	tests := []struct {
		name      string
		aborting  string
		promoting bool
		runs      string // the version production runs alone
		wantOK    bool
		wantMsg   string
	}{
		{name: "canary runs after every step passed: it was promoted", promoting: true, runs: canaryVersion, wantOK: true, wantMsg: "promoted"},
		{name: "canary runs before every step passed: not a promotion", runs: canaryVersion, wantMsg: "did not finish"},
		{name: "canary runs after an abort began: not a promotion", aborting: "rate too low", promoting: true, runs: canaryVersion, wantMsg: "rate too low"},
		{name: "stable runs: it did not finish", runs: stableVersion, wantMsg: "did not finish"},
		{name: "stable runs after an abort", aborting: "rate too low", runs: stableVersion, wantMsg: "rate too low"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			cps := &memCheckpoints{}
			fx.ctl.Persist(t.Context(), cps)
			cp := Checkpoint{
				Status:   Status{Env: env, App: app, StableVersion: stableVersion, CanaryVersion: canaryVersion, Phase: Progressing, Started: time.Now().UTC()},
				Workflow: workflow, Aborting: tt.aborting, Promoting: tt.promoting,
			}
			if err := cps.SaveRollout(t.Context(), cp); err != nil {
				t.Fatal(err)
			}
			fx.ctl.Settle(t.Context(), env, app, tt.runs)
			ups := fx.reporter.all()
			if len(ups) != 1 || ups[0].Success != tt.wantOK || !strings.Contains(ups[0].Message, tt.wantMsg) {
				t.Fatalf("reports %+v, want one with success %v mentioning %q", ups, tt.wantOK, tt.wantMsg)
			}
			if left, _ := cps.UnfinishedRollouts(t.Context(), env, app); len(left) != 0 {
				t.Fatalf("unfinished after Settle: %+v", left)
			}
			if _, ok, err := fx.ctl.Resumable(t.Context(), env, app); ok || err != nil {
				t.Fatalf("Resumable after Settle: %v, %v", ok, err)
			}
		})
	}
}

func TestStartEndsSupersededCheckpoints(t *testing.T) {
	fx := newFixture(t, nil)
	cps := &memCheckpoints{}
	fx.ctl.Persist(t.Context(), cps)
	// A rollout of another canary that a restart interrupted and the
	// manifest has since moved past.
	old := Checkpoint{
		Status:   Status{Env: env, App: app, StableVersion: stableVersion, CanaryVersion: "v20251231000000", Phase: Progressing, Started: time.Now().UTC()},
		Workflow: "web-old-production",
	}
	if err := cps.SaveRollout(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	fx.startWith(t, fx.request(t, "      - setWeight: 50\n"))
	select {
	case <-fx.done:
	case <-time.After(30 * time.Second):
		t.Fatal("rollout did not end")
	}
	if list := fx.ctl.List(); len(list) != 2 || list[0].Phase != Healthy || list[1].CanaryVersion != "v20251231000000" {
		t.Fatalf("List = %+v, want the new rollout Healthy then the superseded one", list)
	}
	if cp := cps.get("v20251231000000"); !cp.Done() || cp.Phase != Degraded || !strings.Contains(cp.Message, "superseded") {
		t.Fatalf("old checkpoint: done %v phase %s message %q; want ended as superseded", cp.Done(), cp.Phase, cp.Message)
	}
	var oldReport *update
	for _, u := range fx.reporter.all() {
		if u.Workflow == "web-old-production" {
			oldReport = &u
		}
	}
	if oldReport == nil || oldReport.Success {
		t.Fatalf("reports %+v: want a failure for the superseded rollout's workflow", fx.reporter.all())
	}
}
