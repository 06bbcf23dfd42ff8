package pipeline_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/pipeline"
)

// gatedBuilder is fakeBuilder whose app build waits for the gate.
type gatedBuilder struct {
	fakeBuilder
	started chan struct{}
	gate    chan struct{}
}

func (b *gatedBuilder) Build(ctx context.Context, req build.Request) (build.Artifact, error) {
	if req.Kind == build.App {
		io.WriteString(req.Log, "compiling\n")
		close(b.started)
		<-b.gate
	}
	return b.fakeBuilder.Build(ctx, req)
}

// waitStep polls until the pipeline's step is Running.
func waitStep(t *testing.T, r *pipeline.Runner, id, step string) {
	t.Helper()
	for range 3000 {
		if p, err := r.Get(context.Background(), id); err == nil && p.Step(step).Phase == pipeline.Running {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("step %s never ran", step)
}

func TestDrainLetsWorkFinishAndStopsWaits(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	req := pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("e", 40)}

	t.Run("a build in progress finishes, no further step starts", func(t *testing.T) {
		r := newRig(t, now)
		b := &gatedBuilder{fakeBuilder: fakeBuilder{fail: map[build.Kind]error{}}, started: make(chan struct{}), gate: make(chan struct{})}
		runner := pipeline.New(r.db, b, r.repo, r.envs.rep, r.envs, pipeline.Options{Now: func() time.Time { return now }})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		id, err := runner.Start(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		<-b.started
		drained := make(chan error, 1)
		go func() { drained <- runner.Drain(context.Background()) }()
		close(b.gate)
		select {
		case err := <-drained:
			if err != nil {
				t.Fatalf("Drain: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Drain did not return after the build finished")
		}
		p, err := r.db.GetPipeline(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Phase != pipeline.Running || p.Step(pipeline.StepBuildApp).Phase != pipeline.Succeeded || p.Step(pipeline.StepBuildPipeline).Phase != pipeline.Pending {
			t.Fatalf("after the drain: phase %s, build-app %s, build-pipeline %s; want Running, Succeeded, Pending",
				p.Phase, p.Step(pipeline.StepBuildApp).Phase, p.Step(pipeline.StepBuildPipeline).Phase)
		}
	})

	t.Run("a wait stops at once and is recorded as interrupted", func(t *testing.T) {
		r := newRig(t, now)
		r.envs.silentProduction = true
		aborted := 0
		runner := pipeline.New(r.db, r.b, r.repo, r.envs.rep, r.envs, pipeline.Options{
			RolloutTimeout: time.Hour, Now: func() time.Time { return now },
			AbortRollout: func(string, string, string, string) error { aborted++; return nil },
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		id, err := runner.Start(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		waitStep(t, runner, id, pipeline.StepAwaitRollout)
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		if err := runner.Drain(dctx); err != nil {
			t.Fatalf("Drain: %v", err)
		}
		p, err := r.db.GetPipeline(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		s := p.Step(pipeline.StepAwaitRollout)
		if p.Phase != pipeline.Running || s.Phase != pipeline.Running || !strings.Contains(s.Log, "interrupted") {
			t.Fatalf("after the drain: phase %s, wait-rollout %s with log %q; want both Running and the interruption logged", p.Phase, s.Phase, s.Log)
		}
		if aborted != 0 {
			t.Fatal("a drain aborted the rollout it was waiting for")
		}

		// The next control plane runs the step again, its log continuing
		// the interrupted one.
		r.envs.silentProduction = false
		next := pipeline.New(r.db, r.b, r.repo, r.envs.rep, r.envs, pipeline.Options{RolloutTimeout: time.Hour, Now: func() time.Time { return now }})
		if err := next.Resume(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.envs.Trigger() // production reports now
		next.Wait()
		if p, err = r.db.GetPipeline(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		s = p.Step(pipeline.StepAwaitRollout)
		if p.Phase != pipeline.Succeeded || !strings.Contains(s.Log, "interrupted") || !strings.Contains(s.Log, "running again") {
			t.Fatalf("after the restart: phase %s (%s), wait-rollout log %q; want Succeeded, with both runs in the log", p.Phase, p.Reason, s.Log)
		}
	})
}

// A running step's log is saved while it runs, so that a kill -9 keeps
// what it wrote so far.
func TestRunningStepLogIsSaved(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r := newRig(t, now)
	b := &gatedBuilder{fakeBuilder: fakeBuilder{fail: map[build.Kind]error{}}, started: make(chan struct{}), gate: make(chan struct{})}
	runner := pipeline.New(r.db, b, r.repo, r.envs.rep, r.envs, pipeline.Options{Now: func() time.Time { return now }})
	id, err := runner.Start(context.Background(), pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("e", 40)})
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Wait()
	defer close(b.gate)
	<-b.started
	for range 300 {
		p, err := r.db.GetPipeline(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if s := p.Step(pipeline.StepBuildApp); s.Phase == pipeline.Running && strings.Contains(s.Log, "compiling") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the running build's log never reached the store")
}
