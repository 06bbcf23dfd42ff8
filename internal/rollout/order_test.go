package rollout

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
)

// One app's slow work never holds up another's: an abort of web completes
// (its Aborted event recorded) while api's canary start is blocked waiting
// for its replicas. The order is asserted through the events' sequence
// numbers; the clock does not move.
func TestAbortCompletesWhileAnotherCanaryStarts(t *testing.T) {
	fx := newFixture(t, nil)
	const (
		api       = "api"
		apiStable = "v20260101000001"
		apiCanary = "v20260102000001"
	)
	apiBackends := []gateway.Backend{backend(t, "api stable")}
	fx.work.running[env+"/"+api+"/"+apiStable] = apiBackends
	if err := fx.router.SetRoute(gateway.Route{Env: env, App: api, StableVersion: apiStable, Stable: apiBackends}); err != nil {
		t.Fatal(err)
	}
	if err := fx.store.SaveApp(t.Context(), AppRecord{Env: env, App: api, StableVersion: apiStable}); err != nil {
		t.Fatal(err)
	}
	entered, returned, releaseStart := blockStarts(t, fx, api)

	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	fx.ctl.SetDesired(Desired{Env: env, App: api, Version: apiCanary, Workflow: "api-9-production",
		Artifact: build.Artifact{App: api, Version: apiCanary, Kind: build.App, Spec: spec}})
	eventually(t, "api's canary start", func() bool {
		select {
		case <-entered:
			return true
		default:
			return false
		}
	})

	if err := fx.ctl.Abort(env, app, "operator saw errors"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web's abort", func() bool { return fx.seq(app, "Aborted") > 0 })
	if returned.Load() {
		t.Fatal("api's canary start returned before web's abort completed: the test proves nothing")
	}
	aborted, apiStarted := fx.seq(app, "Aborted"), fx.seq(api, "Started")
	if apiStarted == 0 || aborted <= apiStarted {
		t.Fatalf("web Aborted #%d, api Started #%d: want the abort after api's rollout began", aborted, apiStarted)
	}
	if got := fx.reasons(api); len(got) != 1 {
		t.Fatalf("api events %v: want only Started while its canary starts", got)
	}
	st, _ := fx.finished(canaryVersion)
	fx.assertAborted(t, st, "aborted by request: operator saw errors")

	// api goes on once its replicas are up.
	releaseStart()
	eventually(t, "api's first step", func() bool { return fx.seq(api, "StepCompleted") > aborted })
	if s, ok := fx.ctl.Active(env, api); !ok || s.Weight != 20 {
		t.Errorf("api rollout %+v, want it at weight 20", s)
	}
}

// Starts of replicas do not hold the workers: with one worker, web's abort
// completes while api's first version waits for its replicas.
func TestAbortCompletesWhileAFirstDeployStartsOnTheOnlyWorker(t *testing.T) {
	fx := newFixture(t, nil)
	fx.workers = 1
	fx.ctl = fx.newController()
	const api = "api"
	entered, returned, releaseOnce := blockStarts(t, fx, api)

	fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
	fx.waitPaused(t)
	fx.ctl.SetDesired(Desired{Env: env, App: api, Version: "v20260102000001", Workflow: "api-9-production",
		Artifact: build.Artifact{App: api, Version: "v20260102000001", Kind: build.App}})
	<-entered
	eventually(t, "api's first version wanted while it starts", func() bool {
		v, known := fx.ctl.Wanted(env, api)
		return known && slices.Equal(v, []string{"v20260102000001"})
	})
	if err := fx.ctl.Abort(env, app, "operator saw errors"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web's abort", func() bool { return fx.seq(app, "Aborted") > 0 })
	if returned.Load() {
		t.Fatal("api's start returned before web's abort completed: the test proves nothing")
	}
	st, _ := fx.finished(canaryVersion)
	fx.assertAborted(t, st, "aborted by request: operator saw errors")
	releaseOnce()
	eventually(t, "api deployed", func() bool { return fx.seq(api, "Deployed") > 0 })
}

// blockStarts makes every replica start of app block until release is
// called (at the latest when the test ends) or its context ends. entered
// is closed when the first one begins; returned says whether one ended.
func blockStarts(t *testing.T, fx *fixture, app string) (entered <-chan struct{}, returned *atomic.Bool, release func()) {
	t.Helper()
	in, out := make(chan struct{}), make(chan struct{})
	returned = &atomic.Bool{}
	var enterOnce, releaseOnce sync.Once
	fx.work.setStartHook(func(ctx context.Context, art build.Artifact) error {
		if art.App != app {
			return nil
		}
		enterOnce.Do(func() { close(in) })
		defer returned.Store(true)
		select {
		case <-out:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	release = func() { releaseOnce.Do(func() { close(out) }) }
	t.Cleanup(release)
	return in, returned, release
}
