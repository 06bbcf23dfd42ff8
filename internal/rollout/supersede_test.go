package rollout

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
)

const nextVersion = "v20260103000000"

// A newer version in the manifest while a rollout runs ends that rollout
// as superseded: traffic back on stable, its canary stopped, its workflow
// told through Supersede, git left alone (the manifest moved on); then the
// newer version rolls out over the same stable version.
func TestSupersededByANewerVersion(t *testing.T) {
	fx := newFixture(t, nil)
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	const nextWorkflow = "web-124-production"
	fx.ctl.SetDesired(Desired{
		Env: env, App: app, Version: nextVersion, Entry: entryOf(t, nextVersion, "n3xt"), Workflow: nextWorkflow,
		Artifact: build.Artifact{App: app, Version: nextVersion, Kind: build.App, Spec: spec},
	})
	var next Status
	fx.until(t, "the next version's pause", func() bool {
		s, ok := fx.ctl.Active(env, app)
		next = s
		return ok && s.CanaryVersion == nextVersion && s.Phase == Paused
	})
	old, ok := fx.finished(canaryVersion)
	wantMsg := "superseded: web " + nextVersion + " now rolls out over " + stableVersion
	if !ok || old.Phase != Degraded || old.Message != wantMsg || old.Weight != 0 {
		t.Fatalf("superseded rollout %+v, want Degraded with %q", old, wantMsg)
	}
	if next.StableVersion != stableVersion || next.Weight != 20 {
		t.Errorf("next rollout %+v, want it at weight 20 over %s", next, stableVersion)
	}
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || !ups[0].Superseded || ups[0].Message != wantMsg {
		t.Errorf("reports %+v, want the superseded workflow told so", ups)
	}
	if got := fx.work.stops(); !slices.Equal(got, []string{env + "/" + app + "/" + canaryVersion}) {
		t.Errorf("stopped %v, want the superseded canary", got)
	}
	if _, msg := fx.production(t); msg != "promote "+canaryVersion {
		t.Errorf("head commit %q: a superseded rollout must not touch git", msg)
	}
	if v, known := fx.ctl.Wanted(env, app); !known || !slices.Equal(v, []string{stableVersion, nextVersion}) {
		t.Errorf("Wanted = %v, %v; want stable and the next canary", v, known)
	}
	superseded, started := fx.seq(app, "Superseded"), uint64(0)
	for _, e := range fx.eventsOf(app) {
		if e.Reason == "Started" && strings.Contains(e.Message, nextVersion) {
			started = e.Seq
		}
	}
	if superseded == 0 || started <= superseded {
		t.Errorf("events %v: want Superseded, then the next rollout Started", fx.eventsOf(app))
	}

	// Aborted, the next rollout reverts nothing either: the manifest does
	// not have its version.
	if err := fx.ctl.Abort(env, app, "enough"); err != nil {
		t.Fatal(err)
	}
	fx.until(t, "the next rollout's end", func() bool { _, ok := fx.finished(nextVersion); return ok })
	if _, msg := fx.production(t); msg != "promote "+canaryVersion {
		t.Errorf("head commit %q: nothing to revert", msg)
	}
	ups = fx.reports.all()
	if len(ups) != 2 || ups[1].Workflow != nextWorkflow || ups[1].Success || ups[1].Superseded {
		t.Errorf("reports %+v, want the next workflow's failure second", ups)
	}
	fx.assertStable(t)
}

// The manifest put back on the stable version by hand while a canary runs:
// the canary is aborted, with nothing to revert.
func TestManifestBackOnStableAbortsTheCanary(t *testing.T) {
	fx := newFixture(t, nil)
	fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
	fx.waitPaused(t)
	fx.ctl.SetDesired(Desired{Env: env, App: app, Version: stableVersion, Entry: stableEntry(t), Workflow: "by-hand",
		Artifact: build.Artifact{App: app, Version: stableVersion, Kind: build.App, Spec: parseSpec(t, "      - pause: {}\n")}})
	st := fx.wait(t)
	const reason = "the production manifest is back on web " + stableVersion
	if st.Phase != Degraded || !strings.Contains(st.Message, reason) {
		t.Fatalf("status %+v, want aborted: %s", st, reason)
	}
	fx.assertStable(t)
	if _, msg := fx.production(t); msg != "promote "+canaryVersion {
		t.Errorf("head commit %q: nothing to revert", msg)
	}
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || ups[0].Success || !strings.Contains(ups[0].Message, reason) {
		t.Errorf("reports %+v, want the canary's workflow told it failed", ups)
	}
	var warned bool
	for _, e := range fx.eventsOf(app) {
		warned = warned || e.Reason == "Aborted" && e.Type == events.Warning
	}
	if !warned {
		t.Errorf("events %+v, want a Warning Aborted", fx.eventsOf(app))
	}
}

// A newer version does not wait for the canary it supersedes to start:
// the start is cut short (the clock does not move, so no deadline ends it).
func TestSupersedingCutsACanaryStartShort(t *testing.T) {
	fx := newFixture(t, nil)
	entered := make(chan struct{})
	fx.work.setStartHook(func(ctx context.Context, art build.Artifact) error {
		if art.Version != canaryVersion {
			return nil
		}
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.run(t)
	fx.ctl.SetDesired(desired(t, spec))
	eventually(t, "the canary's start", func() bool {
		select {
		case <-entered:
			return true
		default:
			return false
		}
	})
	fx.ctl.SetDesired(Desired{Env: env, App: app, Version: nextVersion, Workflow: "web-124-production",
		Artifact: build.Artifact{App: app, Version: nextVersion, Kind: build.App, Spec: spec}})
	eventually(t, "superseded", func() bool { return fx.seq(app, "Superseded") > 0 })
	st, ok := fx.finished(canaryVersion)
	if !ok || !strings.Contains(st.Message, "superseded") {
		t.Fatalf("rollout %+v, want it superseded", st)
	}
	eventually(t, "the next canary routed", func() bool {
		rt, ok := fx.router.Route(env, app)
		return ok && rt.CanaryVersion == nextVersion
	})
}
