package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/gateway"
)

// A control plane restart resumes a rollout where its checkpoint says: an
// ordinary pass of the new controller over the same store.
func TestResumeAtPausedStepAndWeight(t *testing.T) {
	fx := newFixture(t, nil)
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n      - setWeight: 60\n      - pause: {}\n")
	fx.start(t, spec)
	if s := fx.waitPaused(t); s.Step != 1 || s.Weight != 20 {
		t.Fatalf("before the restart: step %d weight %d, want step 1 weight 20", s.Step, s.Weight)
	}
	fx.restart(t, nil)
	before := len(fx.router.seen())
	fx.ctl.SetDesired(desired(t, spec))
	s := fx.waitPaused(t)
	if s.Step != 1 || s.Weight != 20 {
		t.Fatalf("after the restart: step %d weight %d, want step 1 weight 20", s.Step, s.Weight)
	}
	if rt, _ := fx.router.Route(env, app); rt.CanaryWeight != 20 || len(rt.Canary) == 0 {
		t.Fatalf("route after the restart: weight %d, %d canary backends; want 20 and the canary", rt.CanaryWeight, len(rt.Canary))
	}
	if got := fx.router.seen()[before:]; len(got) != 0 {
		t.Fatalf("weights set again on resume: %v", got)
	}
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	if s := fx.waitPausedAt(t, 3); s.Weight != 60 {
		t.Fatalf("weight %d at step 3, want 60", s.Weight)
	}
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	fx.assertPromoted(t, fx.wait(t))
	if cp := fx.store.get(canaryVersion); !cp.Done() || cp.Phase != Healthy || cp.StableEntry.Deploy.Revision != "57ab1e" {
		t.Fatalf("checkpoint at the end: done %v phase %s stable entry %+v", cp.Done(), cp.Phase, cp.StableEntry)
	}
}

// The gateway of an in-process data plane restarts with the control plane
// and forgets its routes: the resumed rollout routes stable and canary
// again at the stored weight.
func TestResumeRoutesAgain(t *testing.T) {
	fx := newFixture(t, nil)
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	fx.stop()
	fx.router.RemoveRoute(env, app)
	fx.restart(t, nil)
	fx.ctl.SetDesired(desired(t, spec))
	fx.until(t, "routes again", func() bool {
		rt, ok := fx.router.Route(env, app)
		return ok && rt.CanaryWeight == 20 && rt.StableVersion == stableVersion && rt.CanaryVersion == canaryVersion
	})
	if got := fx.hits(t, 10); got["200 canary"] != 2 || got["200 stable"] != 8 {
		t.Errorf("answers at weight 20 = %v, want 2 canary and 8 stable", got)
	}
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	fx.assertPromoted(t, fx.wait(t))
}

func TestResumeContinuesAnalysisRun(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	spec := parseSpec(t, "      - setWeight: 30\n      - analysis: {templates: [{templateName: rate}]}\n      - setWeight: 70\n")
	fx.start(t, spec)
	var first AnalysisRequest
	fx.until(t, "analysis start", func() bool {
		calls := fx.analyzer.calls()
		if len(calls) == 1 {
			first = calls[0]
		}
		return len(calls) == 1
	})
	if first.Name == "" || first.Resume {
		t.Fatalf("first analysis request %+v: want a fresh named run", first)
	}
	fx.restart(t, nil)
	fx.ctl.SetDesired(desired(t, spec))
	st := fx.wait(t)
	fx.assertPromoted(t, st)
	calls := fx.analyzer.calls()
	if len(calls) != 1 || calls[0].Name != first.Name || !calls[0].Resume {
		t.Fatalf("analysis after the restart: %+v; want run %s resumed", calls, first.Name)
	}
	if w := fx.router.seen(); !slices.Equal(w[len(w)-2:], []int{70, 100}) {
		t.Fatalf("weights %v, want ... 70 100", w)
	}
	if len(st.Analyses) != 1 || st.Analyses[0].Name != first.Name || st.Analyses[0].Phase != Successful {
		t.Errorf("analyses %+v, want the one run, Successful", st.Analyses)
	}
}

// routeCanary puts the world where a killed control plane left a rollout
// at weight: the canary running and routed beside stable.
func (fx *fixture) routeCanary(t *testing.T, weight int) {
	t.Helper()
	canary := []gateway.Backend{backend(t, "canary")}
	fx.work.running[env+"/"+app+"/"+canaryVersion] = canary
	if err := fx.router.Gateway.SetRoute(gateway.Route{Env: env, App: app, StableVersion: stableVersion, Stable: fx.stable,
		CanaryVersion: canaryVersion, Canary: canary, CanaryWeight: weight}); err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) checkpoint(t *testing.T, cp Checkpoint) {
	t.Helper()
	base := Checkpoint{
		Status: Status{Env: env, App: app, StableVersion: stableVersion, CanaryVersion: canaryVersion,
			Phase: Progressing, Steps: 2, Started: fx.clk.Now().UTC()},
		Workflow: workflow, StableEntry: stableEntry(t), CanaryEntry: canaryEntry(t),
	}
	cp.Status = base.Status
	cp.Workflow, cp.StableEntry, cp.CanaryEntry = base.Workflow, base.StableEntry, base.CanaryEntry
	if err := fx.store.SaveRollout(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
}

// Killed in the middle of an abort, the restarted controller finishes it
// at once (no desired version needed): its first pass is an ordinary one.
func TestResumeFinishesAnAbort(t *testing.T) {
	const reason = "analysis rate Failed: success rate 0.4"
	tests := []struct {
		name string
		// killed sets up what the abort had done.
		killed func(t *testing.T, fx *fixture) Checkpoint
		// stops is how many times the new controller stops the canary.
		stops int
	}{
		{
			name: "after the reason was saved",
			killed: func(t *testing.T, fx *fixture) Checkpoint {
				fx.routeCanary(t, 50)
				return Checkpoint{Aborting: reason}
			},
			stops: 1,
		},
		{
			name: "after traffic was back on stable and the canary stopped",
			killed: func(t *testing.T, fx *fixture) Checkpoint {
				return Checkpoint{Aborting: reason, CanaryStopped: true}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			cp := tt.killed(t, fx)
			fx.checkpoint(t, cp)
			fx.run(t)
			st := fx.wait(t)
			if st.Phase != Degraded || st.Weight != 0 || !strings.Contains(st.Message, "success rate 0.4") {
				t.Fatalf("status %+v, want Degraded with the stored reason", st)
			}
			fx.assertStable(t)
			if got := fx.work.stops(); len(got) != tt.stops {
				t.Errorf("stopped %v, want the canary stopped %d times", got, tt.stops)
			}
			ups := fx.reports.all()
			if len(ups) != 1 || ups[0].Success || ups[0].Workflow != workflow || !strings.Contains(ups[0].Message, reason) {
				t.Fatalf("reports %+v, want one failure for %s", ups, workflow)
			}
			if got, msg := fx.production(t); got.Version() != stableVersion || got.Deploy.Revision != "57ab1e" || !strings.Contains(msg, reason) {
				t.Fatalf("production manifest has %s (revision %q, commit %q), want the stable entry back", got.Version(), got.Deploy.Revision, msg)
			}
			if fx.seq(app, "Aborted") == 0 {
				t.Errorf("events %v, want Aborted", fx.reasons(app))
			}
		})
	}
}

// Killed in the middle of a promotion, the restarted controller finishes
// it, each of its steps once.
func TestResumeFinishesAPromotion(t *testing.T) {
	tests := []struct {
		name    string
		killed  func(t *testing.T, fx *fixture) Checkpoint
		weights []int // set by the new controller
	}{
		{
			name: "after every step passed",
			killed: func(t *testing.T, fx *fixture) Checkpoint {
				fx.routeCanary(t, 50)
				return Checkpoint{Promoting: true, Status: Status{Weight: 50}}
			},
			weights: []int{100},
		},
		{
			name: "after all traffic went to the canary",
			killed: func(t *testing.T, fx *fixture) Checkpoint {
				fx.routeCanary(t, 100)
				return Checkpoint{Promoting: true, Status: Status{Weight: 100}}
			},
		},
		{
			name: "after the canary was routed as stable",
			killed: func(t *testing.T, fx *fixture) Checkpoint {
				fx.routeCanary(t, 100)
				rt, _ := fx.router.Route(env, app)
				if err := fx.router.Gateway.SetRoute(gateway.Route{Env: env, App: app, StableVersion: canaryVersion, Stable: rt.Canary}); err != nil {
					t.Fatal(err)
				}
				return Checkpoint{Promoting: true, Status: Status{Weight: 100}}
			},
		},
		{
			name: "after the record was saved",
			killed: func(t *testing.T, fx *fixture) Checkpoint {
				fx.routeCanary(t, 100)
				rt, _ := fx.router.Route(env, app)
				if err := fx.router.Gateway.SetRoute(gateway.Route{Env: env, App: app, StableVersion: canaryVersion, Stable: rt.Canary}); err != nil {
					t.Fatal(err)
				}
				if err := fx.store.SaveApp(t.Context(), AppRecord{Env: env, App: app, StableVersion: canaryVersion, StableEntry: canaryEntry(t)}); err != nil {
					t.Fatal(err)
				}
				return Checkpoint{Promoting: true, Status: Status{Weight: 100}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			cp := tt.killed(t, fx)
			weight := cp.Weight
			fx.checkpoint(t, cp)
			saved := fx.store.get(canaryVersion)
			saved.Weight, saved.Promoting = weight, true
			if err := fx.store.SaveRollout(t.Context(), saved); err != nil {
				t.Fatal(err)
			}
			fx.run(t)
			fx.assertPromoted(t, fx.wait(t))
			if got := fx.router.seen(); !slices.Equal(got, tt.weights) {
				t.Errorf("weights %v, want %v", got, tt.weights)
			}
		})
	}
}

// An older Runway kept no app records: a rollout it left unfinished says
// what the stable version is.
func TestUpgradeTakesTheStableVersionFromTheRollout(t *testing.T) {
	fx := newFixture(t, nil)
	fx.store.mu.Lock()
	delete(fx.store.apps, env+"/"+app)
	fx.store.mu.Unlock()
	fx.routeCanary(t, 20)
	fx.checkpoint(t, Checkpoint{Status: Status{Step: 1, Weight: 20}})
	saved := fx.store.get(canaryVersion)
	saved.Step, saved.Weight, saved.Phase = 1, 20, Paused
	if err := fx.store.SaveRollout(t.Context(), saved); err != nil {
		t.Fatal(err)
	}
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPausedAt(t, 1) // as loaded: the pass may not have run yet
	eventually(t, "the record taken from the rollout", func() bool {
		rec := fx.store.record(app)
		return rec.StableVersion == stableVersion && rec.StableEntry != nil && rec.StableEntry.Deploy.Revision == "57ab1e"
	})
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	fx.assertPromoted(t, fx.wait(t))
}

// An older Runway could leave several unfinished rollouts of an app; all
// but the newest were overtaken by it.
func TestOvertakenCheckpointsEnd(t *testing.T) {
	fx := newFixture(t, nil)
	const older = "v20251231000000"
	old := Checkpoint{
		Status:   Status{Env: env, App: app, StableVersion: stableVersion, CanaryVersion: older, Phase: Progressing, Started: fx.clk.Now().UTC()},
		Workflow: "web-old-production",
	}
	if err := fx.store.SaveRollout(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	fx.clk.Step(checkEvery)
	fx.checkpoint(t, Checkpoint{}) // the current one, just begun
	fx.start(t, parseSpec(t, "      - setWeight: 50\n"))
	st := fx.wait(t)
	fx.assertPromotedExcept(t, st, "web-old-production")
	list := fx.ctl.List()
	if len(list) != 2 || list[0].CanaryVersion != canaryVersion || list[0].Phase != Healthy || list[1].CanaryVersion != older {
		t.Fatalf("List = %+v, want the new rollout Healthy then the superseded one", list)
	}
	if cp := fx.store.get(older); !cp.Done() || cp.Phase != Degraded || !strings.Contains(cp.Message, "superseded") {
		t.Fatalf("old checkpoint: done %v phase %s message %q; want ended as superseded", cp.Done(), cp.Phase, cp.Message)
	}
}

// assertPromotedExcept is assertPromoted with the reports to workflow
// other left out.
func (fx *fixture) assertPromotedExcept(t *testing.T, st Status, other string) {
	t.Helper()
	var rest []update
	var found bool
	for _, u := range fx.reports.all() {
		if u.Workflow == other {
			found = found || u.Superseded
			continue
		}
		rest = append(rest, u)
	}
	if !found {
		t.Errorf("reports %+v: want the overtaken rollout's workflow told it was superseded", fx.reports.all())
	}
	fx.reports.mu.Lock()
	fx.reports.updates = rest
	fx.reports.mu.Unlock()
	fx.assertPromoted(t, st)
}

// The background analysis, too, resumes the run it had after a restart.
func TestResumeContinuesBackgroundRun(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	spec := parseSpec(t, "      - setWeight: 10\n      - pause: {}\n")
	spec.Strategy.Canary.Analysis = &appspec.BackgroundAnalysis{Templates: []appspec.TemplateRef{{TemplateName: "t"}}}
	fx.start(t, spec)
	fx.waitPaused(t)
	eventually(t, "background run", func() bool { return len(fx.analyzer.calls()) == 1 })
	first := fx.analyzer.calls()
	if first[0].Resume {
		t.Fatalf("analysis requests %+v, want one fresh background run", first)
	}
	fx.restart(t, []Outcome{{Phase: blockUntilCancelled}})
	fx.ctl.SetDesired(desired(t, spec))
	fx.until(t, "background run resumed", func() bool { return len(fx.analyzer.calls()) == 1 })
	if calls := fx.analyzer.calls(); calls[0].Name != first[0].Name || !calls[0].Resume {
		t.Fatalf("after the restart: %+v, want %s resumed", calls, first[0].Name)
	}
	fx.waitPaused(t)
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	st := fx.wait(t)
	fx.assertPromoted(t, st)
	if len(st.Analyses) != 1 || st.Analyses[0].Phase != Successful {
		t.Errorf("analyses %+v, want the background run terminated at the promotion", st.Analyses)
	}
}

// A rollout paused for longer than the newest maxHistory rollouts took is
// found by the restarted controller: listed, and resumed before its app is
// handed over.
func TestRestartFindsAnOldUnfinishedRollout(t *testing.T) {
	fx := newFixture(t, nil)
	spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	fx.stop()
	at := fx.clk.Now().UTC()
	for i := range maxHistory + 50 {
		at = at.Add(time.Minute)
		cp := Checkpoint{Status: Status{Env: env, App: fmt.Sprintf("app%d", i), StableVersion: stableVersion, CanaryVersion: canaryVersion,
			Phase: Healthy, Started: at, Finished: at.Add(time.Second)}}
		if err := fx.store.SaveRollout(t.Context(), cp); err != nil {
			t.Fatal(err)
		}
	}
	fx.restart(t, nil)
	eventually(t, "a pass of web", func() bool { _, known := fx.ctl.Wanted(env, app); return known })
	if s, ok := fx.ctl.Active(env, app); !ok || s.CanaryVersion != canaryVersion || s.Phase != Paused {
		t.Fatalf("Active = %+v, %v; want the paused rollout", s, ok)
	}
	if v, _ := fx.ctl.Wanted(env, app); !slices.Equal(v, []string{stableVersion, canaryVersion}) {
		t.Errorf("Wanted = %v, want stable and canary", v)
	}
	if n := len(fx.ctl.List()); n != maxHistory+1 {
		t.Errorf("List has %d rollouts, want the running one and the newest %d ended", n, maxHistory)
	}
}
