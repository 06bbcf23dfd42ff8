package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/test/harness"
)

// The benchmarks here measure a real Runway end to end; they report, never
// assert. Each runs its scenario once whatever b.N is: run them with
// -benchtime 1x (BENCH=pipelines bash scripts/bench.sh does). Their
// canaries have one step and no analysis: what is measured is how the
// pipelines and controllers handle many changes at once.

// BenchmarkPipelines pushes a stream of changes to three apps sharing one
// state repository (three rounds of one push per app, 300 ms apart; each
// change's canary holds 5 s at 50 %) with the default limits, and reports the pipelines completed per minute and
// how long each change waited in its app's promotion queue: from its
// promote step's start to its promotion commit (the step's end; the
// commit's own time, to the second, is logged beside it).
func BenchmarkPipelines(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	apps := []string{harness.AppName, secondApp, "homelabdelta"}
	var extra []harness.App
	for _, a := range apps[1:] {
		extra = append(extra, harness.App{Name: a})
	}
	// A pipeline waiting on a report that can never come (a rollout
	// overtaken by the next one, before issue 10) fails in 5 minutes
	// rather than the default 30.
	h, _, _ := startRunwayWith(ctx, b, harness.Options{Apps: extra, Tune: func(c *server.Config) { c.Timeouts.Rollout.Duration = 5 * time.Minute }})
	for app, id := range pushAll(ctx, b, h, apps, func(app string) []byte { return quickSpec(b, app, quickCanary) }, "first version") {
		if p := waitEnded(ctx, b, h, id); p.Phase != pipeline.Succeeded {
			b.Fatalf("first version of %s: %s", app, describe(p))
		}
	}

	const rounds = 3
	type pushed struct {
		app, id string
		at      time.Time
	}
	var stream []pushed
	var shas []string
	for round := range rounds {
		for _, app := range apps {
			shas = append(shas, commitSpec(ctx, b, h, app, "", quickSpec(b, app, fiveSecondCanary), fmt.Sprintf("%s: change %d", app, round+1)))
		}
	}
	b.ResetTimer()
	for i, sha := range shas {
		app := apps[i%len(apps)]
		stream = append(stream, pushed{app: app, at: time.Now(), id: pushOK(ctx, b, h, app, sha, fmt.Sprintf("%s: change %d", app, i/len(apps)+1))})
		time.Sleep(300 * time.Millisecond)
	}
	var ended []*pipeline.Pipeline
	for _, s := range stream {
		ended = append(ended, waitEnded(ctx, b, h, s.id))
	}
	b.StopTimer()

	last := stream[0].at
	phases := map[pipeline.Phase]int{}
	for _, p := range ended {
		phases[p.Phase]++
		last = later(last, p.Finished)
	}
	window := last.Sub(stream[0].at)
	perMinute := float64(len(ended)) / window.Minutes()
	history, err := h.ProductionHistory()
	if err != nil {
		b.Fatal(err)
	}
	var waits []time.Duration
	var rows strings.Builder
	for _, p := range ended {
		s := p.Step(pipeline.StepPromote)
		if p.Phase != pipeline.Succeeded || s == nil || s.Started.IsZero() || s.Finished.IsZero() {
			fmt.Fprintf(&rows, "  %-14s %-16s %-10s\n", p.App, p.Version, p.Phase)
			continue
		}
		wait := s.Finished.Sub(s.Started)
		waits = append(waits, wait)
		committed := "not found"
		for _, at := range history {
			if at.Manifest == nil {
				continue
			}
			if a := at.Manifest.Apps[p.App]; a != nil && a.Version() == p.Version {
				committed = at.When.Sub(s.Started).Round(time.Second).String()
				break
			}
		}
		fmt.Fprintf(&rows, "  %-14s %-16s %-10s promote queue %-8s (commit time - promote start: %s)\n", p.App, p.Version, p.Phase, wait.Round(time.Millisecond), committed)
	}
	slices.Sort(waits)
	b.Logf("%d pushes to %d apps in %s; all ended %s after the first push: %.2f pipelines/min; phases %v\n%s",
		len(stream), len(apps), stream[len(stream)-1].at.Sub(stream[0].at).Round(time.Millisecond), window.Round(time.Millisecond), perMinute, phases, rows.String())
	b.ReportMetric(perMinute, "pipelines/min")
	b.ReportMetric(float64(phases[pipeline.Succeeded])/window.Minutes(), "promoted/min")
	if len(waits) > 0 {
		b.ReportMetric(waits[len(waits)/2].Seconds(), "queue-wait-p50-s")
		b.ReportMetric(waits[len(waits)-1].Seconds(), "queue-wait-max-s")
	}
}

// BenchmarkParallelStaging pushes 10 changes of one app within 2.4 s and
// reports how long the last of their staging environments took to be
// ready (its wait-staging-ready step), against the floor: the same 10
// environments (the app's production version and its database) written
// by hand in one state-repository commit, timed from the commit until
// every one is Ready. The target is within 1.5x of the floor.
func BenchmarkParallelStaging(b *testing.B) {
	const changes = 10
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	h, _, _ := startRunwayWith(ctx, b, harness.Options{Tune: func(c *server.Config) {
		c.Limits.Pipelines = changes
		c.Limits.StagingEnvironments = changes
		c.Limits.ParallelEnvironments = changes
	}})
	first := pushAll(ctx, b, h, []string{harness.AppName}, func(app string) []byte { return quickSpec(b, app, quickCanary) }, "first version")
	if p := waitEnded(ctx, b, h, first[harness.AppName]); p.Phase != pipeline.Succeeded {
		b.Fatalf("first version: %s", describe(p))
	}

	var shas []string
	for i := range changes {
		shas = append(shas, commitSpec(ctx, b, h, harness.AppName, "", quickSpec(b, harness.AppName, quickCanary), fmt.Sprintf("change %d of %d", i+1, changes)))
	}
	b.ResetTimer()
	start := time.Now()
	var ids []string
	for i, sha := range shas {
		ids = append(ids, pushOK(ctx, b, h, harness.AppName, sha, fmt.Sprintf("change %d of %d", i+1, changes)))
		if i < changes-1 {
			time.Sleep(240 * time.Millisecond)
		}
	}
	pushedIn := time.Since(start)
	var lastReady pipeline.Step
	var readyRows strings.Builder
	for _, id := range ids {
		p, ok, err := h.WaitStep(ctx, id, func(p *pipeline.Pipeline) bool {
			s := p.Step(pipeline.StepAwaitDeploy)
			return s != nil && !s.Finished.IsZero()
		})
		if err != nil || !ok {
			b.Fatalf("pipeline %s ended %s before its staging environment was ready (%v): %s", id, p.Phase, err, p.Reason)
		}
		s := *p.Step(pipeline.StepAwaitDeploy)
		fmt.Fprintf(&readyRows, "  %s %-16s wait-staging-ready %-10s %s, ready %s after the first push\n", p.ID, p.StagingEnv, s.Phase, s.Duration().Round(time.Millisecond), s.Finished.Sub(start).Round(time.Millisecond))
		if s.Finished.After(lastReady.Finished) {
			lastReady = s
		}
	}
	b.StopTimer()
	for _, id := range ids {
		waitEnded(ctx, b, h, id)
	}
	waitNoStaging(ctx, b, h)

	floor := handFloor(ctx, b, h, changes)
	ratio := lastReady.Duration().Seconds() / floor.Seconds()
	b.Logf("%d changes pushed in %s; the last staging environment ready %s after the first push, its wait-staging-ready %s; by hand, %d environments in one commit: %s; ratio %.2f (target <= 1.5)\n%s",
		changes, pushedIn.Round(time.Millisecond), lastReady.Finished.Sub(start).Round(time.Millisecond), lastReady.Duration().Round(time.Millisecond), changes, floor.Round(time.Millisecond), ratio, readyRows.String())
	b.ReportMetric(lastReady.Duration().Seconds(), "last-wait-staging-ready-s")
	b.ReportMetric(lastReady.Finished.Sub(start).Seconds(), "first-push-to-last-ready-s")
	b.ReportMetric(floor.Seconds(), "hand-floor-s")
	b.ReportMetric(ratio, "ratio-to-floor")
}

// handFloor writes n staging environments running production's version
// of the example app and its database in one state-repository commit,
// tells Runway through the state repository's webhook, and returns how
// long until every one was Ready (by the events' times); then it removes
// them.
func handFloor(ctx context.Context, b *testing.B, h *harness.Harness, n int) time.Duration {
	since, err := h.LastSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("floor-%02d", i+1))
	}
	start := time.Now()
	if _, err := h.CommitState(ctx, fmt.Sprintf("bench: %d environments by hand", n), func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		data, err := read(manifest.ProductionPath)
		if err != nil {
			return nil, err
		}
		prod, err := manifest.Parse(data)
		if err != nil {
			return nil, err
		}
		var changes []gitops.Change
		for _, env := range names {
			m := prod.Clone()
			m.EnvName, m.ChangeDescription, m.DeployingWorkflowName = env, "bench floor", ""
			for name, a := range m.Apps {
				if name != harness.AppName && name != "postgres" {
					delete(m.Apps, name)
				}
				a.DeployingWorkflowName = ""
			}
			out, err := m.Marshal()
			if err != nil {
				return nil, err
			}
			changes = append(changes, gitops.Change{Path: manifest.StagingPath(env), Data: out})
		}
		return changes, nil
	}); err != nil {
		b.Fatal(err)
	}
	notifyState(ctx, b, h)
	var last time.Time
	for _, env := range names {
		e, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Environment, Name: env, Reason: "Ready"}, 5*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		last = later(last, e.Time)
	}
	floor := last.Sub(start)
	if _, err := h.CommitState(ctx, "bench: remove the environments made by hand", func(func(string) ([]byte, error)) ([]gitops.Change, error) {
		var changes []gitops.Change
		for _, env := range names {
			changes = append(changes, gitops.Change{Path: manifest.StagingPath(env), Delete: true})
		}
		return changes, nil
	}); err != nil {
		b.Fatal(err)
	}
	notifyState(ctx, b, h)
	waitNoStaging(ctx, b, h)
	return floor
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
