package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/test/harness"
)

// TestSIGTERMDrains stops "runway serve" with SIGTERM, with the server's
// default config (the data plane outlives the control plane), at three
// points of the json-pong change's pipeline, and starts it again each
// time:
//   - while a build runs: a step doing work gets the shutdown grace to
//     finish, so the build is not redone;
//   - while the pipeline waits for the staging environment: a wait stops at
//     once, its log says it was interrupted, and it runs again;
//   - mid-canary: the rollout stops where it is, is not aborted, and
//     resumes at its weight.
//
// The process must exit 0 each time, production must answer every probe
// (one every 50 ms) throughout, and the pipeline must end Succeeded.
func TestSIGTERMDrains(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	events := &logEvents{ch: make(chan string, 256)}
	keepDataPlane := func(c *server.Config) { c.StopDataPlaneOnExit = false }
	h, dir, logBuf := startRunwayWith(ctx, t, harness.Options{Process: true, Log: events, Tune: keepDataPlane})

	deployFirstVersion(ctx, t, h)
	stableAddrs := replicaAddrs(ctx, h, manifest.ProductionEnv)

	sha, err := h.CommitChange(ctx, "json-pong", "ping answers JSON")
	if err != nil {
		t.Fatal(err)
	}
	for len(events.ch) > 0 {
		<-events.ch // the first pipeline's
	}
	resp, err := h.Push(ctx, "main", sha, "ping answers JSON")
	if err != nil || resp.Status != 202 {
		t.Fatalf("push: %+v, %v", resp, err)
	}
	traffic := h.StartTrafficEvery(ctx, 50*time.Millisecond, 10*time.Minute)
	// The canary's analysis wants 10 canary requests a minute.
	load := h.StartTrafficEvery(ctx, 20*time.Millisecond, 10*time.Minute)

	points := []string{"step build-app started", "step wait-staging-ready started", "canary at weight 20%"}
	terminated := map[string]time.Duration{}
	// The rollout as the API lists it just before the SIGTERM at the
	// canary, and as the restarted control plane first lists it.
	var before, after rollout.Status
	var resumed bool
	var p *pipeline.Pipeline
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for deadline := time.Now().Add(10 * time.Minute); p == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("pipeline %s did not end within 10 minutes", resp.Pipeline)
		}
		select {
		case ev := <-events.ch:
			if _, done := terminated[ev]; done || !slices.Contains(points, ev) {
				continue
			}
			mid := ev == "canary at weight 20%"
			if mid {
				before, _ = activeRollout(ctx, h)
			}
			took, err := h.Terminate()
			if err != nil {
				t.Fatalf("SIGTERM at %s: %v", ev, err)
			}
			terminated[ev] = took
			if err := h.Respawn(ctx); err != nil {
				t.Fatalf("restart after SIGTERM at %s: %v", ev, err)
			}
			if mid {
				after, resumed = rolloutOf(ctx, h, before.CanaryVersion, time.Minute)
			}
		case <-poll.C:
			got, err := h.Pipeline(ctx, resp.Pipeline)
			if err != nil {
				t.Fatalf("reading pipeline: %v", err)
			}
			if got.Phase == pipeline.Succeeded || got.Phase == pipeline.Failed {
				p = got
			}
		}
	}
	counts, loadCounts := traffic.Stop(), load.Stop()
	var b strings.Builder
	for _, pt := range points {
		fmt.Fprintf(&b, "  %-36s exited %s after SIGTERM\n", pt, terminated[pt].Round(time.Millisecond))
	}
	t.Logf("SIGTERM test: pipeline %s; probes %v; load %v\n%s", p.Phase, counts, loadCounts, b.String())

	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s ended %s at %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
	}
	for _, pt := range points {
		if _, ok := terminated[pt]; !ok {
			t.Errorf("the pipeline never reached %q", pt)
		}
	}
	for k, n := range merge(counts, loadCounts) {
		if !strings.HasSuffix(k, "/200") {
			t.Errorf("%d production requests answered %s across the SIGTERMs", n, k)
		}
	}
	if log := p.Step(pipeline.StepBuildApp).Log; strings.Contains(log, "interrupted") || !strings.Contains(log, "built ") {
		t.Errorf("build-app was not let finish within the shutdown grace; its log:\n%s", log)
	}
	if log := p.Step(pipeline.StepAwaitDeploy).Log; !strings.Contains(log, "interrupted at") || !strings.Contains(log, "by shutdown") {
		t.Errorf("wait-staging-ready's log does not record its interruption:\n%s", log)
	}
	serverLog := logBuf.String()
	if !strings.Contains(serverLog, "pipelines drained") {
		t.Errorf("the server log never says %q", "pipelines drained")
	}
	// The rollout resumed where it was: the restarted control plane lists
	// the same rollout (same canary, same start), at least at its weight,
	// not one started over.
	switch {
	case before.CanaryVersion == "":
		t.Error("no rollout was listed when the canary reached 20%")
	case !resumed:
		t.Errorf("the restarted control plane never listed the rollout of %s", before.CanaryVersion)
	// (Started compared to the half second: a store may keep less
	// precision than the live status; a rollout started over starts after
	// the restart, seconds later.)
	case after.Started.Sub(before.Started).Abs() > 500*time.Millisecond || after.Weight < before.Weight && after.Finished.IsZero():
		t.Errorf("after the restart the rollout of %s is %+v; before the SIGTERM it was %+v: started over instead of resumed", before.CanaryVersion, after, before)
	}
	if strings.Contains(serverLog, "aborting rollout") {
		t.Error("a SIGTERM aborted the rollout")
	}
	assertProduction(ctx, t, h, `{"value":"pong"}`, p.Version)
	assertGitProduction(ctx, t, h, p.Version)
	assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	assertOnlyExplained(t, h, p.Version, stableAddrs)
}

// rolloutOf waits, at most limit, until the API lists the rollout of
// canary (finished or not), and returns it.
func rolloutOf(ctx context.Context, h *harness.Harness, canary string, limit time.Duration) (rollout.Status, bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		var rs []rollout.Status
		if err := h.GetJSON(ctx, "/api/v1/rollouts", &rs); err == nil {
			for _, r := range rs {
				if r.Env == manifest.ProductionEnv && r.App == harness.AppName && r.CanaryVersion == canary {
					return r, true
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rollout.Status{}, false
}
