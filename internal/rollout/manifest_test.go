package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/manifest"
)

// stableDesired is the production manifest back on (or still on) web's
// stable version, with entry.
func stableDesired(t *testing.T, entry *manifest.App) Desired {
	d := desired(t, nil)
	d.Version, d.Entry, d.Workflow, d.Artifact.Version = stableVersion, entry, "", stableVersion
	return d
}

// A hand edit of the stable version's production entry (the version
// unchanged) is what the abort of the next canary writes back to git.
func TestAbortKeepsAHandEditOfTheStableEntry(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: Failed, Reason: "error rate"}})
	hand := strings.Replace(productionJSON(stableVersion, "57ab1e"), `"kept":"unknown field"`, `"kept":"unknown field","replicas":7`, 1)
	m, err := manifest.Parse([]byte(hand))
	if err != nil {
		t.Fatal(err)
	}
	fx.run(t)
	fx.ctl.SetDesired(stableDesired(t, m.Apps[app]))
	eventually(t, "the edited entry recorded", func() bool {
		e := fx.store.record(app).StableEntry
		return e != nil && sameEntry(e, m.Apps[app])
	})
	spec := parseSpec(t, "      - setWeight: 20\n      - analysis: {templates: [{templateName: rate}]}\n")
	fx.ctl.SetDesired(desired(t, spec))
	st := fx.wait(t)
	fx.assertAborted(t, st, "error rate")
	if entry, _ := fx.production(t); !sameEntry(entry, m.Apps[app]) {
		t.Fatalf("production entry %+v after the revert, want the hand-edited stable entry %+v", entry, m.Apps[app])
	}
}

// A version aborted, then declared again once the manifest showed the
// revert (a person reverting the rollback commit), is rolled out again.
func TestAbortedVersionDeclaredAgainRollsOut(t *testing.T) {
	fx := newFixture(t, nil)
	fx.workers = 1 // keys are taken in the order they were queued
	fx.ctl = fx.newController()
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	if err := fx.ctl.Abort(env, app, "try later"); err != nil {
		t.Fatal(err)
	}
	fx.wait(t)
	fx.ctl.SetDesired(desired(t, spec)) // the manifest read before the revert: not rolled out again
	fx.ctl.SetDesired(stableDesired(t, stableEntry(t)))
	fx.ctl.Forget(env, "other")
	eventually(t, "passes done", func() bool { _, known := fx.ctl.Wanted(env, "other"); return known })
	fx.ctl.SetDesired(desired(t, spec)) // declared again
	fx.until(t, "the second rollout's pause", func() bool {
		s, ok := fx.ctl.Active(env, app)
		return ok && s.CanaryVersion == canaryVersion && s.Phase == Paused
	})
	var started int
	for _, r := range fx.reasons(app) {
		if r == "Started" {
			started++
		}
	}
	if started != 2 {
		t.Errorf("events %v, want two rollouts Started", fx.reasons(app))
	}
}

// AbortVersion aborts the running rollout only if its canary is that
// version: a pipeline can never abort another pipeline's rollout.
func TestAbortVersionAbortsOnlyThatVersion(t *testing.T) {
	fx := newFixture(t, nil)
	fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
	fx.waitPaused(t)
	for _, v := range []string{nextVersion, stableVersion, ""} {
		if err := fx.ctl.AbortVersion(env, app, v, "not mine"); !errors.Is(err, ErrNoRollout) {
			t.Fatalf("AbortVersion(%q) = %v, want ErrNoRollout", v, err)
		}
	}
	if cp := fx.store.get(canaryVersion); cp.Aborting != "" {
		t.Fatalf("another version's abort reached the rollout: %q", cp.Aborting)
	}
	if err := fx.ctl.AbortVersion(env, app, canaryVersion, "mine"); err != nil {
		t.Fatal(err)
	}
	fx.assertAborted(t, fx.wait(t), "aborted by request: mine")
	if err := fx.ctl.AbortVersion(env, app, canaryVersion, "again"); !errors.Is(err, ErrNoRollout) {
		t.Fatalf("AbortVersion after the end = %v, want ErrNoRollout", err)
	}
}

// The record's entry, read back from a store that keeps it as JSON (the
// SQLite one), is the same entry: an unchanged manifest is not written
// again on every pass.
func TestEntryRoundTripIsTheSameEntry(t *testing.T) {
	e := stableEntry(t)
	data, err := json.Marshal(AppRecord{StableEntry: e})
	if err != nil {
		t.Fatal(err)
	}
	var back AppRecord
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !sameEntry(e, back.StableEntry) {
		t.Fatalf("%s: not the same entry after a round trip", data)
	}
	if sameEntry(e, canaryEntry(t)) || sameEntry(e, nil) || !sameEntry(nil, nil) {
		t.Fatal("sameEntry tells different entries apart wrongly")
	}
}

// An app that leaves the manifest while its first version starts: the
// start is cut short, what it started stopped, its workflow told.
func TestForgetDuringAFirstDeploy(t *testing.T) {
	fx := firstDeployFixture(t)
	entered := make(chan struct{})
	fx.work.setStartHook(func(ctx context.Context, art build.Artifact) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	fx.run(t)
	fx.ctl.SetDesired(desired(t, nil))
	<-entered
	fx.ctl.Forget(env, app)
	eventually(t, "its workflow told", func() bool { return len(fx.reports.all()) > 0 })
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || !ups[0].Superseded || !strings.Contains(ups[0].Message, "left the production manifest") {
		t.Fatalf("reports %+v, want the first deploy's workflow told it was superseded", ups)
	}
	if got := fx.work.stops(); !slices.Equal(got, []string{env + "/" + app + "/" + canaryVersion}) {
		t.Errorf("stopped %v, want the first version", got)
	}
	eventually(t, "nothing wanted", func() bool { v, known := fx.ctl.Wanted(env, app); return known && len(v) == 0 })
}
