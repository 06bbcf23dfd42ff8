package pipeline_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// listHook runs hook once, right after the first ListPipelines returns:
// the moment between Resume's read of the stored pipelines and its
// launches, when the API (already serving) may take a cancel.
type listHook struct {
	*sqlite.DB
	once sync.Once
	hook func()
}

func (s *listHook) ListPipelines(ctx context.Context, limit int) ([]*pipeline.Pipeline, error) {
	ps, err := s.DB.ListPipelines(ctx, limit)
	s.once.Do(s.hook)
	return ps, err
}

// A cancel accepted while Resume runs (the pipeline is read, not running
// yet) is kept: the resumed run starts from the stored record, with the
// request, and the pipeline ends Cancelled rather than promoting.
func TestCancelAcceptedWhileResumingIsKept(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	ctx, stop := context.WithCancel(context.Background())
	a := pr.start(t, ctx, "a")
	waitFor(t, pr.runner, a, "held the promotion", inWaitRollout)
	b := pr.start(t, ctx, "b")
	waitFor(t, pr.runner, b, "waited", waitingBehind(a))
	stop()
	pr.runner.Wait()

	var restarted *pipeline.Runner
	var cancelErr error
	st := &listHook{DB: pr.db}
	st.hook = func() { cancelErr = restarted.Cancel(context.Background(), b, "user: stop b") }
	restarted = pipeline.New(st, pr.b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
	if err := restarted.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cancelErr != nil {
		t.Fatalf("cancel: %v", cancelErr)
	}
	pr.envs.release(a)
	pr.envs.release(b)
	restarted.Wait()
	p := pr.stored(t, b)
	if p.Phase != pipeline.Cancelled || p.Reason != "cancelled: user: stop b" || p.Promoting {
		t.Fatalf("b: Cancel answered nil, yet it ended %s (%q), promoting %v, cancel requested %q", p.Phase, p.Reason, p.Promoting, p.CancelRequested)
	}
	if got, want := history(t, pr.url), []string{pr.stored(t, a).Version}; !slices.Equal(got, want) {
		t.Fatalf("production history %v, want %v: the cancelled change promoted", got, want)
	}
}

// without is the store with some pipelines hidden from ListPipelines: a
// runner resuming from it resumes only the others.
type without struct {
	*sqlite.DB
	hidden string
}

func (s *without) ListPipelines(ctx context.Context, limit int) ([]*pipeline.Pipeline, error) {
	ps, err := s.DB.ListPipelines(ctx, limit)
	return slices.DeleteFunc(ps, func(p *pipeline.Pipeline) bool { return p.ID == s.hidden }), err
}

// A pipeline that waited to promote before a restart and, resumed, takes
// the promotion at once (the holder finished meanwhile) does not keep
// "waiting to promote" as its reason after it succeeds.
func TestWaitingReasonClearedAfterARestart(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	ctx, stop := context.WithCancel(context.Background())
	a := pr.start(t, ctx, "a")
	waitFor(t, pr.runner, a, "held the promotion", inWaitRollout)
	b := pr.start(t, ctx, "b")
	waitFor(t, pr.runner, b, "waited", waitingBehind(a))
	pr.waitStored(t, b, "stored its reason", waitingBehind(a))
	stop()
	pr.runner.Wait()

	// a alone finishes first, then b resumes with the promotion free.
	first := pipeline.New(&without{DB: pr.db, hidden: b}, pr.b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
	if err := first.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	pr.envs.release(a)
	first.Wait()
	if p := pr.stored(t, a); p.Phase != pipeline.Succeeded {
		t.Fatalf("a: %s %q", p.Phase, p.Reason)
	}
	second := pipeline.New(pr.db, pr.b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
	if err := second.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, second, b, "promoted", inWaitRollout)
	pr.envs.release(b)
	second.Wait()
	if p := pr.stored(t, b); p.Phase != pipeline.Succeeded || p.Reason != "" {
		t.Fatalf("b: %s with reason %q; want Succeeded, no reason", p.Phase, p.Reason)
	}
}

// hungRepo is the state repo whose first push with the prefix hangs until
// its context ends, like a remote that stopped answering.
type hungRepo struct {
	*gitops.Repo
	prefix  string
	entered chan struct{}
	once    sync.Once
}

func (h *hungRepo) Update(ctx context.Context, message string, edit gitops.Edit) (string, error) {
	hang := false
	if strings.HasPrefix(message, h.prefix) {
		h.once.Do(func() { hang = true })
	}
	if !hang {
		return h.Repo.Update(ctx, message, edit)
	}
	close(h.entered)
	<-ctx.Done()
	return "", context.Cause(ctx)
}

// A push to a state repo that hangs ends at the push deadline (on the
// runner's clock): the step fails naming it, the pipeline tears down and
// ends, and Wait returns.
func TestHungPushEndsAtItsDeadline(t *testing.T) {
	r := newRig(t, t0)
	clk := clocktesting.NewFakeClock(t0)
	repo := &hungRepo{Repo: r.repo, prefix: "stage ", entered: make(chan struct{})}
	runner := pipeline.New(r.db, r.b, repo, r.envs.rep, r.envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Minute, Clock: clk,
	})
	id, err := runner.Start(context.Background(), request("a"))
	if err != nil {
		t.Fatal(err)
	}
	<-repo.entered
	clk.Step(2 * time.Minute)
	runner.Wait()
	p, err := r.db.GetPipeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.StepStage + ": deadline 2m passed pushing the staging manifest to the state repository"
	if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepStage || !strings.HasPrefix(p.Reason, want) {
		t.Fatalf("pipeline %s at %q: %q; want Failed at %s, %q...", p.Phase, p.FailedStep, p.Reason, pipeline.StepStage, want)
	}
	if s := p.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
		t.Fatalf("teardown %s: %s", s.Phase, s.Error)
	}
}
