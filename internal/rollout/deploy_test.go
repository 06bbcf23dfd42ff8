package rollout

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/runway-cd/runway/internal/build"
)

// firstDeployFixture is web's world before its first version: no record,
// no route, nothing running.
func firstDeployFixture(t *testing.T) *fixture {
	fx := newFixture(t, nil)
	fx.store.mu.Lock()
	delete(fx.store.apps, env+"/"+app)
	fx.store.mu.Unlock()
	fx.router.RemoveRoute(env, app)
	fx.work.mu.Lock()
	delete(fx.work.running, env+"/"+app+"/"+stableVersion)
	fx.work.mu.Unlock()
	return fx
}

// An app's first version is started as stable, without a canary, and
// reported.
func TestFirstDeploy(t *testing.T) {
	fx := firstDeployFixture(t)
	if _, known := fx.ctl.Wanted(env, app); known {
		t.Fatal("Wanted known before any pass")
	}
	fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
	eventually(t, "deployed", func() bool { return fx.seq(app, "Deployed") > 0 })
	route, ok := fx.router.Route(env, app)
	if !ok || route.StableVersion != canaryVersion || route.CanaryVersion != "" || !slices.Equal(route.Stable, fx.work.backendsOf(canaryVersion)) {
		t.Fatalf("route %+v, want the first version as stable", route)
	}
	if got := fx.hits(t, 2); got["200 canary"] != 2 {
		t.Errorf("answers %v, want the first version's", got)
	}
	if rec := fx.store.record(app); rec.StableVersion != canaryVersion || rec.StableEntry.Deploy.Revision != "c4n4ry" {
		t.Errorf("record %+v, want the first version with its entry", rec)
	}
	ups := fx.reports.all()
	if len(ups) != 1 || !ups[0].Success || ups[0].Workflow != workflow || ups[0].Message != "web "+canaryVersion+" is healthy" {
		t.Errorf("reports %+v, want one success", ups)
	}
	if v, known := fx.ctl.Wanted(env, app); !known || !slices.Equal(v, []string{canaryVersion}) {
		t.Errorf("Wanted = %v, %v", v, known)
	}
	if s := fx.ctl.Stable(env, app); s != canaryVersion {
		t.Errorf("Stable = %q", s)
	}
	if l := fx.ctl.List(); len(l) != 0 {
		t.Errorf("List = %+v: a first deploy is no rollout", l)
	}
	if got := fx.reasons(app); !slices.Equal(got, []string{"Deployed"}) {
		t.Errorf("events %v, want Deployed only", got)
	}
}

// A first version that cannot start is reported once and not started
// again for the same change.
func TestFirstDeployFailure(t *testing.T) {
	fx := firstDeployFixture(t)
	// One worker takes the keys in the order they were queued: once the
	// key queued after web's second pass is done, so is that pass.
	fx.workers = 1
	fx.ctl = fx.newController()
	var starts atomic.Int32
	fx.work.setStartHook(func(context.Context, build.Artifact) error {
		starts.Add(1)
		return errors.New("exit status 1: no such table")
	})
	spec := parseSpec(t, "      - pause: {}\n")
	fx.start(t, spec)
	eventually(t, "failure reported", func() bool { return len(fx.reports.all()) == 1 })
	fx.ctl.SetDesired(desired(t, spec)) // the environment controller's next pass
	fx.ctl.Forget("production", "other")
	eventually(t, "passes done", func() bool { _, known := fx.ctl.Wanted(env, "other"); return known })
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Success || !strings.Contains(ups[0].Message, "no such table") {
		t.Errorf("reports %+v, want one failure", ups)
	}
	if n := starts.Load(); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
	if _, ok := fx.router.Route(env, app); ok {
		t.Error("a failed first version was routed")
	}
}

// An app gone from the manifest: every version stopped, its route
// removed, its record cleared, its rollout ended.
func TestForget(t *testing.T) {
	fx := newFixture(t, nil)
	fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
	fx.waitPaused(t)
	fx.ctl.Forget(env, app)
	eventually(t, "forgotten", func() bool { _, ok := fx.router.Route(env, app); return !ok })
	stops := fx.work.stops()
	slices.Sort(stops)
	if want := []string{env + "/" + app + "/" + stableVersion, env + "/" + app + "/" + canaryVersion}; !slices.Equal(stops, want) {
		t.Errorf("stopped %v, want %v", stops, want)
	}
	if rec := fx.store.record(app); rec.StableVersion != "" {
		t.Errorf("record %+v, want it cleared", rec)
	}
	st, ok := fx.finished(canaryVersion)
	if !ok || st.Phase != Degraded || !strings.Contains(st.Message, "left the production manifest") {
		t.Errorf("rollout %+v, want it ended", st)
	}
	if ups := fx.reports.all(); len(ups) != 1 || !ups[0].Superseded || ups[0].Workflow != workflow {
		t.Errorf("reports %+v, want the rollout's workflow told it was superseded", ups)
	}
	if v, known := fx.ctl.Wanted(env, app); !known || len(v) != 0 {
		t.Errorf("Wanted = %v, %v; want nothing, known", v, known)
	}
	if _, msg := fx.production(t); msg != "promote "+canaryVersion {
		t.Errorf("head commit %q: forgetting touches no git", msg)
	}
}
