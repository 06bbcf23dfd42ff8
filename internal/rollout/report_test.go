package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/workload"
)

// killedStore is a store whose control plane is killed right after it
// saved the first app record: that save is kept, the writer hangs in it
// until the test ends (as a killed process never returns), and nothing is
// written after it.
type killedStore struct {
	*memStore
	once    sync.Once
	killed  chan struct{} // closed once the record is saved
	release chan struct{} // closed at the test's end
}

func (k *killedStore) isKilled() bool {
	select {
	case <-k.killed:
		return true
	default:
		return false
	}
}

func (k *killedStore) SaveApp(ctx context.Context, a AppRecord) error {
	if k.isKilled() {
		return errors.New("killed")
	}
	err := k.memStore.SaveApp(ctx, a)
	k.once.Do(func() { close(k.killed) })
	<-k.release
	return errors.Join(err, errors.New("killed"))
}

func (k *killedStore) SaveRollout(ctx context.Context, cp Checkpoint) error {
	if k.isKilled() {
		return errors.New("killed")
	}
	return k.memStore.SaveRollout(ctx, cp)
}

// A first deploy killed after its record was saved and before its report:
// the restarted controller reports it, so its pipeline does not wait out
// its deadline.
func TestFirstDeployKilledBeforeItsReportIsReportedAfterTheRestart(t *testing.T) {
	fx := firstDeployFixture(t)
	spec := parseSpec(t, "      - pause: {}\n")
	ks := &killedStore{memStore: fx.store, killed: make(chan struct{}), release: make(chan struct{})}
	lost := &fakeReporter{}
	killed := New(Options{Router: fx.router, Analyzer: fx.analyzer, Repo: fx.repo, Reporter: lost, Store: ks,
		Workloads: fx.work, Clock: fx.clk, Logger: fx.log, CanaryCheck: checkEvery})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); killed.Run(ctx) }()
	t.Cleanup(func() { cancel(); close(ks.release); <-done })
	killed.SetDesired(desired(t, spec))
	eventually(t, "the record saved", ks.isKilled)

	fx.run(t)
	fx.ctl.SetDesired(desired(t, spec))
	eventually(t, "deployed", func() bool { return fx.seq(app, "Deployed") > 0 })
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || !ups[0].Success || ups[0].Message != "web "+canaryVersion+" is healthy" {
		t.Fatalf("reports %+v, want the first deploy's success", ups)
	}
	if got := lost.all(); len(got) != 0 {
		t.Fatalf("the killed controller reported %+v", got)
	}
	if rec := fx.store.record(app); rec.StableVersion != canaryVersion || !rec.Reported {
		t.Errorf("record %+v, want the first version, reported", rec)
	}
}

// flakyReporter refuses reports (a locked database, say) while refuse
// says so, counting the refusals, and records the others.
type flakyReporter struct {
	fakeReporter
	refuse  func(n int) error // n: refusals so far; nil error takes it
	refused atomic.Int32
}

func (r *flakyReporter) refusal() error {
	if err := r.refuse(int(r.refused.Load())); err != nil {
		r.refused.Add(1)
		return err
	}
	return nil
}

func (r *flakyReporter) Update(ctx context.Context, wf, a string, ok bool, msg string) error {
	if err := r.refusal(); err != nil {
		return err
	}
	return r.fakeReporter.Update(ctx, wf, a, ok, msg)
}

func (r *flakyReporter) Supersede(ctx context.Context, wf, a, msg string) error {
	if err := r.refusal(); err != nil {
		return err
	}
	return r.fakeReporter.Supersede(ctx, wf, a, msg)
}

var errLocked = errors.New("database is locked")

// A promotion whose report the reporter refused once is reported again
// (with the queue's backoff) before the rollout ends.
func TestRefusedReportIsSentAgain(t *testing.T) {
	fx := newFixture(t, nil)
	rep := &flakyReporter{refuse: func(n int) error {
		if n == 0 {
			return errLocked
		}
		return nil
	}}
	rep.fakeReporter = fakeReporter{}
	fx.reporter = rep
	fx.ctl = fx.newController()
	fx.start(t, parseSpec(t, "      - setWeight: 50\n"))
	fx.wait(t)
	ups := rep.all()
	if len(ups) != 1 || !ups[0].Success || ups[0].Workflow != workflow || rep.refused.Load() != 1 {
		t.Fatalf("reports %+v after %d refusals, want the promotion's success after one", ups, rep.refused.Load())
	}
	if cp := fx.store.get(canaryVersion); !cp.Reported || !cp.Done() {
		t.Errorf("checkpoint reported %v done %v", cp.Reported, cp.Done())
	}
}

// An abort whose report the reporter refused until the control plane
// restarted is reported by the restarted one.
func TestRefusedReportIsSentAfterARestart(t *testing.T) {
	fx := newFixture(t, nil)
	rep := &flakyReporter{refuse: func(int) error { return errLocked }}
	fx.reporter = rep
	fx.ctl = fx.newController()
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	if err := fx.ctl.Abort(env, app, "enough"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a refused report", func() bool { return rep.refused.Load() > 0 })
	fx.stop()
	if cp := fx.store.get(canaryVersion); cp.Reported || cp.Done() {
		t.Fatalf("checkpoint reported %v done %v before the report was taken", cp.Reported, cp.Done())
	}
	fx.reporter = fx.reports
	fx.restart(t, nil)
	st := fx.wait(t)
	fx.assertAborted(t, st, "aborted by request: enough")
}

// A report the reporter refuses as invalid (a workflow name it cannot
// take) is given up: the rollout still ends.
func TestInvalidReportIsGivenUp(t *testing.T) {
	fx := newFixture(t, nil)
	rep := &flakyReporter{refuse: func(int) error { return fmt.Errorf("%w: workflow name %q", reporter.ErrInvalid, workflow) }}
	fx.reporter = rep
	fx.ctl = fx.newController()
	fx.start(t, parseSpec(t, "      - setWeight: 50\n"))
	if st := fx.wait(t); st.Phase != Healthy {
		t.Fatalf("status %+v, want promoted", st)
	}
	if n := rep.refused.Load(); n != 1 {
		t.Errorf("report tried %d times, want once", n)
	}
}

// A first deploy overtaken by a newer version while its replicas start is
// told it was superseded; the newer version is deployed and reported.
func TestOvertakenFirstDeployIsToldSuperseded(t *testing.T) {
	fx := firstDeployFixture(t)
	started := make(chan struct{})
	var once sync.Once
	fx.work.setStartHook(func(ctx context.Context, art build.Artifact) error {
		if art.Version != canaryVersion {
			return nil
		}
		once.Do(func() { close(started) })
		<-ctx.Done()
		return ctx.Err()
	})
	fx.run(t)
	fx.ctl.SetDesired(desired(t, nil))
	<-started
	const nextWorkflow = "web-124-production"
	fx.ctl.SetDesired(Desired{Env: env, App: app, Version: nextVersion, Workflow: nextWorkflow,
		Artifact: build.Artifact{App: app, Version: nextVersion, Kind: build.App}})
	eventually(t, "the next version deployed", func() bool { return fx.seq(app, "Deployed") > 0 })
	ups := fx.reports.all()
	if len(ups) != 2 || ups[0].Workflow != workflow || !ups[0].Superseded || !strings.Contains(ups[0].Message, nextVersion) ||
		ups[1].Workflow != nextWorkflow || !ups[1].Success {
		t.Fatalf("reports %+v, want %s superseded, then %s's success", ups, workflow, nextWorkflow)
	}
	if s, d := fx.seq(app, "Superseded"), fx.seq(app, "Deployed"); s == 0 || d < s {
		t.Errorf("events %v, want Superseded then Deployed", fx.reasons(app))
	}
}

// A first version whose start fails for a reason not its own is started
// startAttemptsReported times, then given up: its failure reported once,
// and not started again for the same change.
func TestFirstDeployGivenUpAfterRetries(t *testing.T) {
	fx := firstDeployFixture(t)
	fx.workers = 1 // keys are taken in the order they were queued
	fx.ctl = fx.newController()
	var starts atomic.Int32
	fx.work.setStartHook(func(context.Context, build.Artifact) error {
		starts.Add(1)
		return fmt.Errorf("%w: port range exhausted", workload.ErrRetry)
	})
	spec := parseSpec(t, "      - pause: {}\n")
	fx.start(t, spec)
	fx.until(t, "failure reported", func() bool { return len(fx.reports.all()) > 0 })
	for range 20 { // any backoff left would start it again
		fx.clk.Step(checkEvery)
	}
	fx.ctl.SetDesired(desired(t, spec)) // the environment controller's next pass
	fx.ctl.Forget(env, "other")
	eventually(t, "passes done", func() bool { _, known := fx.ctl.Wanted(env, "other"); return known })
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Success || !strings.Contains(ups[0].Message, "port range exhausted") ||
		!strings.Contains(ups[0].Message, fmt.Sprintf("(%d attempts)", startAttemptsReported)) {
		t.Errorf("reports %+v, want one failure after %d attempts", ups, startAttemptsReported)
	}
	if n := starts.Load(); n != startAttemptsReported {
		t.Errorf("started %d times, want %d", n, startAttemptsReported)
	}
	if _, ok := fx.router.Route(env, app); ok {
		t.Error("a failed first version was routed")
	}
}
