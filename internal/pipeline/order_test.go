package pipeline_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
)

// appRepo is an app's repository (bare, pushed to from a work clone) whose
// commits the pipelines take.
type appRepo struct {
	t    *testing.T
	url  string
	work string
}

func newAppRepo(t *testing.T) *appRepo {
	t.Helper()
	dir := t.TempDir()
	r := &appRepo{t: t, url: filepath.Join(dir, "hello.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "-q", "--bare", "--initial-branch=main", r.url)
	r.git(dir, "clone", "-q", r.url, r.work)
	r.git(r.work, "checkout", "-q", "-b", "main")
	return r
}

func (r *appRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit commits and pushes a change on main and returns its id: each
// commit is a descendant of the ones before.
func (r *appRepo) commit(msg string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.work, "file"), []byte(msg), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.git(r.work, "add", "file")
	r.git(r.work, "commit", "-q", "-m", msg)
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

// request is a push of commit to the app's repository.
func (r *appRepo) request(commit string) pipeline.Request {
	return pipeline.Request{App: "hello", CloneURL: r.url, Branch: "main", Commit: commit, Message: "change " + commit[:7]}
}

// historyRig is a promotion rig whose runner orders commits by the app
// repository's history (a real verifier), or by arrival when ancestry is
// off.
type historyRig struct {
	*promotionRig
	app *appRepo
}

func newHistoryRig(t *testing.T, ancestry bool, b pipeline.Builder) *historyRig {
	t.Helper()
	pr := newPromotionRig(t, pipeline.Options{})
	if ancestry {
		pr.opts.Ancestry = build.NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)
	}
	if b == nil {
		b = pr.b
	}
	pr.runner = pipeline.New(pr.db, b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
	return &historyRig{promotionRig: pr, app: newAppRepo(t)}
}

func (hr *historyRig) startCommit(t *testing.T, commit string) string {
	t.Helper()
	id, err := hr.runner.Start(context.Background(), hr.app.request(commit))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Pipelines waiting for the promotion: when it frees, the one whose commit
// descends from the other's goes, although it arrived first; the other
// (its ancestor) is superseded. Without Ancestry, arrival order decides
// (the documented zero value).
func TestWaitingPromotionsFollowCommitHistory(t *testing.T) {
	for _, ancestry := range []bool{true, false} {
		name := "history"
		if !ancestry {
			name = "arrival order without Ancestry"
		}
		t.Run(name, func(t *testing.T) {
			hr := newHistoryRig(t, ancestry, nil)
			base := hr.app.commit("base")
			older := hr.app.commit("older")
			newer := hr.app.commit("newer")
			a := hr.startCommit(t, base)
			waitFor(t, hr.runner, a, "held the promotion", inWaitRollout)
			// The newer commit arrives first (its push was verified first,
			// or the older one's was delivered again after a 503).
			n := hr.startCommit(t, newer)
			waitFor(t, hr.runner, n, "waited", waitingBehind(a))
			o := hr.startCommit(t, older)
			waitFor(t, hr.runner, o, "waited", waitingBehind(a))
			hr.envs.release(a)
			winner, loser := n, o
			if !ancestry {
				winner, loser = o, n
			}
			waitFor(t, hr.runner, winner, "promoted", inWaitRollout)
			hr.envs.release(winner)
			hr.runner.Wait()

			pw, pl := hr.stored(t, winner), hr.stored(t, loser)
			if pw.Phase != pipeline.Succeeded {
				t.Fatalf("%s (commit %.7s): %s %q; want Succeeded", winner, pw.Commit, pw.Phase, pw.Reason)
			}
			if pl.Phase != pipeline.Superseded || !strings.HasPrefix(pl.Reason, "superseded by "+winner+" (") {
				t.Fatalf("%s (commit %.7s): %s %q; want Superseded by %s", loser, pl.Commit, pl.Phase, pl.Reason, winner)
			}
			if got, want := history(t, hr.url), []string{hr.stored(t, a).Version, pw.Version}; !slices.Equal(got, want) {
				t.Fatalf("production history %v, want %v", got, want)
			}
		})
	}
}

// Two close pushes verified in reverse order: the newer commit's pipeline
// arrives first but is slower; the older one promotes, then the newer one
// promotes too (production moves forward), rather than being superseded
// by a change it already holds.
func TestNewerCommitArrivingFirstStillPromotes(t *testing.T) {
	app := newAppRepo(t)
	older := app.commit("older")
	newer := app.commit("newer")
	b := newCommitBuilder(newer)
	hr := newHistoryRig(t, true, b)
	hr.app = app
	n := hr.startCommit(t, newer) // its build waits for the test
	<-b.started
	o := hr.startCommit(t, older)
	<-b.started
	waitFor(t, hr.runner, o, "promoted", inWaitRollout)
	hr.envs.release(o)
	waitFor(t, hr.runner, o, "ended", func(p *pipeline.Pipeline) bool { return p.Phase.Done() })
	close(b.gates[newer])
	waitFor(t, hr.runner, n, "promoted", inWaitRollout)
	hr.envs.release(n)
	hr.runner.Wait()
	po, pn := hr.stored(t, o), hr.stored(t, n)
	if po.Phase != pipeline.Succeeded || pn.Phase != pipeline.Succeeded {
		t.Fatalf("older %s %q, newer %s %q; want both Succeeded", po.Phase, po.Reason, pn.Phase, pn.Reason)
	}
	if got, want := history(t, hr.url), []string{po.Version, pn.Version}; !slices.Equal(got, want) {
		t.Fatalf("production history %v, want %v", got, want)
	}
	if rev := production(t, hr.repo).Apps["hello"].Deploy.Revision; rev != newer {
		t.Fatalf("production's revision %.7s, want the newer commit %.7s", rev, newer)
	}
}

// An older commit whose pipeline arrives after a newer one promoted (a
// push delivered again late) is superseded at its promotion: production
// never moves back.
func TestLateOlderCommitIsSuperseded(t *testing.T) {
	hr := newHistoryRig(t, true, nil)
	older := hr.app.commit("older")
	newer := hr.app.commit("newer")
	n := hr.startCommit(t, newer)
	waitFor(t, hr.runner, n, "promoted", inWaitRollout)
	hr.envs.release(n)
	waitFor(t, hr.runner, n, "ended", func(p *pipeline.Pipeline) bool { return p.Phase.Done() })
	o := hr.startCommit(t, older)
	hr.runner.Wait()
	pn, po := hr.stored(t, n), hr.stored(t, o)
	if pn.Phase != pipeline.Succeeded {
		t.Fatalf("newer: %s %q", pn.Phase, pn.Reason)
	}
	if po.Phase != pipeline.Superseded || !strings.HasPrefix(po.Reason, "superseded by "+n+" (") || !strings.Contains(po.Reason, "promoted first") {
		t.Fatalf("older, arriving last: %s %q; want Superseded by %s, which promoted first", po.Phase, po.Reason, n)
	}
	if got := history(t, hr.url); !slices.Equal(got, []string{pn.Version}) {
		t.Fatalf("production history %v, want only %s", got, pn.Version)
	}
}

// The promote step reads production's entry at the head it lands on: one
// whose revision is newer than the pipeline's commit (a hand commit, or a
// runner that did not know this pipeline), or is its very commit, ends the
// pipeline Superseded and production is left as it is; an older one is
// replaced.
func TestPromoteRefusesToMoveProductionBack(t *testing.T) {
	cases := []struct {
		name string
		// production is the revision production has before the pipeline
		// runs, the pipeline's commit is commit; both index the commits.
		production, commit int
		want               string // reason prefix; "" Succeeded
	}{
		{name: "production newer", production: 1, commit: 0, want: "superseded: production already has hello vhand at commit "},
		{name: "production at the same commit", production: 0, commit: 0, want: "superseded: production already has hello vhand at commit "},
		{name: "production older", production: 0, commit: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hr := newHistoryRig(t, true, nil)
			hr.envs.releaseAll = true
			commits := []string{hr.app.commit("one"), hr.app.commit("two")}
			ctx := context.Background()
			if _, err := hr.repo.Update(ctx, "by hand", editProduction(func(m *manifest.Manifest) {
				a := &manifest.App{}
				a.Images.Code.Image, a.Images.Code.Tag = "runway.local/hello", "vhand"
				a.Deploy.Revision = commits[c.production]
				m.Apps["hello"] = a
			})); err != nil {
				t.Fatal(err)
			}
			id := hr.startCommit(t, commits[c.commit])
			hr.runner.Wait()
			p := hr.stored(t, id)
			got := production(t, hr.repo).Apps["hello"]
			if c.want == "" {
				if p.Phase != pipeline.Succeeded || got.Deploy.Revision != commits[c.commit] {
					t.Fatalf("pipeline %s %q, production at %.7s; want Succeeded, at %.7s", p.Phase, p.Reason, got.Deploy.Revision, commits[c.commit])
				}
				return
			}
			if p.Phase != pipeline.Superseded || !strings.HasPrefix(p.Reason, c.want) || p.Step(pipeline.StepPromote).Phase != pipeline.Superseded {
				t.Fatalf("pipeline %s %q, promote %s; want Superseded, %q...", p.Phase, p.Reason, p.Step(pipeline.StepPromote).Phase, c.want)
			}
			if got.Version() != "vhand" || got.Deploy.Revision != commits[c.production] {
				t.Fatalf("production moved to %s at %.7s", got.Version(), got.Deploy.Revision)
			}
			if envs := stagingEnvs(t, hr.repo); len(envs) != 0 {
				t.Fatalf("staging environments %v", envs)
			}
		})
	}
}

// blockingRepo is the state repo with the first Update whose message has
// the prefix held until the test answers it with an error (nil: push).
type blockingRepo struct {
	*gitops.Repo
	prefix  string
	entered chan string // the held push's message
	answer  chan error
	once    sync.Once
}

func (b *blockingRepo) Update(ctx context.Context, message string, edit gitops.Edit) (string, error) {
	held := false
	if strings.HasPrefix(message, b.prefix) {
		b.once.Do(func() { held = true })
	}
	if held {
		b.entered <- message
		if err := <-b.answer; err != nil {
			return "", err
		}
	}
	return b.Repo.Update(ctx, message, edit)
}

// A promotion whose commit never landed supersedes nobody: the older
// change that waited behind it promotes instead of ending "superseded by
// ... promoted first".
func TestFailedPromotionSupersedesNobody(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	b := newCommitBuilder(strings.Repeat("a", 40))
	repo := &blockingRepo{Repo: pr.repo, prefix: "promote ", entered: make(chan string, 1), answer: make(chan error)}
	pr.runner = pipeline.New(pr.db, b, repo, pr.envs.rep, pr.envs, pr.opts)
	ctx := context.Background()
	older := pr.start(t, ctx, "a") // its build waits for the test
	<-b.started
	newer := pr.start(t, ctx, "b")
	<-b.started
	msg := <-repo.entered // newer holds the promotion, its push in flight
	if !strings.Contains(msg, "("+newer+")") {
		t.Fatalf("held push %q is not %s's", msg, newer)
	}
	close(b.gates[strings.Repeat("a", 40)])
	waitFor(t, pr.runner, older, "waited", waitingBehind(newer))
	repo.answer <- errors.New("remote hung up")
	waitFor(t, pr.runner, older, "promoted", inWaitRollout)
	pr.envs.release(older)
	pr.runner.Wait()
	pn, po := pr.stored(t, newer), pr.stored(t, older)
	if pn.Phase != pipeline.Failed || pn.FailedStep != pipeline.StepPromote {
		t.Fatalf("newer: %s at %q: %s; want Failed at promote", pn.Phase, pn.FailedStep, pn.Reason)
	}
	if po.Phase != pipeline.Succeeded {
		t.Fatalf("older: %s %q; want Succeeded (nothing newer landed)", po.Phase, po.Reason)
	}
	if got := history(t, pr.url); !slices.Equal(got, []string{po.Version}) {
		t.Fatalf("production history %v, want only %s", got, po.Version)
	}
}

// teardownEnvs are rolloutEnvs whose listed environments the test sets:
// a pipeline's teardown waits while its environment is listed.
type teardownEnvs struct {
	*rolloutEnvs
	mu      sync.Mutex
	running []string
}

func (e *teardownEnvs) Envs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.running)
}

func (e *teardownEnvs) set(envs ...string) {
	e.mu.Lock()
	e.running = envs
	e.mu.Unlock()
}

// A pipeline that ends after its promotion (its rollout superseded) frees
// the promotion before its teardown, however long the teardown takes: the
// change waiting behind it promotes meanwhile.
func TestPromotionFreedBeforeTeardownAfterAFailure(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	envs := &teardownEnvs{rolloutEnvs: pr.envs}
	pr.opts.TeardownTimeout = time.Hour // the test ends the teardown
	pr.runner = pipeline.New(pr.db, pr.b, pr.repo, pr.envs.rep, envs, pr.opts)
	ctx := context.Background()
	a := pr.start(t, ctx, "a")
	pa := waitFor(t, pr.runner, a, "promoted", inWaitRollout)
	envs.set(pa.StagingEnv) // a's staging environment is slow to go
	b := pr.start(t, ctx, "b")
	waitFor(t, pr.runner, b, "waited", waitingBehind(a))
	pr.envs.mu.Lock()
	pr.envs.superseded[a] = "rollout overtaken"
	pr.envs.mu.Unlock()
	pr.envs.Trigger()
	waitFor(t, pr.runner, a, "tore down", func(p *pipeline.Pipeline) bool {
		return p.Step(pipeline.StepTeardown).Phase == pipeline.Running
	})
	waitFor(t, pr.runner, b, "promoted while a tears down", inWaitRollout)
	if p := must(pr.runner.Get(ctx, a)); p.Phase.Done() || p.Step(pipeline.StepTeardown).Phase != pipeline.Running {
		t.Fatalf("a: %s, teardown %s; want still tearing down", p.Phase, p.Step(pipeline.StepTeardown).Phase)
	}
	envs.set()
	pr.envs.release(b)
	pr.runner.Wait()
	if p := pr.stored(t, a); p.Phase != pipeline.Superseded || p.Reason != "rollout overtaken" {
		t.Fatalf("a: %s %q", p.Phase, p.Reason)
	}
	if p := pr.stored(t, b); p.Phase != pipeline.Succeeded {
		t.Fatalf("b: %s %q", p.Phase, p.Reason)
	}
}
