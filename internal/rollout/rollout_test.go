package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
)

func TestRollout(t *testing.T) {
	const steps = `
      - setWeight: 20
      - pause: {duration: 10ms}
      - analysis: {templates: [{templateName: maintain-success-rate}], args: [{name: extra, value: "1"}]}
      - setWeight: 50
      - pause: {duration: 10ms}
      - analysis: {templates: [{templateName: maintain-success-rate}]}
`
	tests := []struct {
		name     string
		steps    string
		outcomes []Outcome
		// drive steers the running rollout, as a person would.
		drive  func(t *testing.T, fx *fixture)
		assert func(t *testing.T, fx *fixture, st Status)
	}{
		{
			name:  "all steps pass",
			steps: steps,
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{20, 50, 100}) {
					t.Errorf("weights = %v, want [20 50 100]", got)
				}
				calls := fx.analyzer.calls()
				if len(calls) != 2 || len(st.Analyses) != 2 {
					t.Fatalf("analyses = %+v (status %+v), want 2", calls, st.Analyses)
				}
				args := calls[0].Args
				if args["app"] != app || args["env"] != env || args["version"] != canaryVersion ||
					args["canary-version"] != canaryVersion || args["stable-version"] != stableVersion || args["extra"] != "1" {
					t.Errorf("analysis args = %v", args)
				}
				if calls[0].Templates[0].TemplateName != "maintain-success-rate" || calls[0].Name == calls[1].Name || calls[0].Resume {
					t.Errorf("analysis requests = %+v", calls)
				}
				for _, r := range st.Analyses {
					if r.Phase != Successful {
						t.Errorf("analysis run %+v, want Successful", r)
					}
				}
				want := []string{"Started", "StepCompleted", "Pausing", "StepCompleted", "StepCompleted", "StepCompleted", "Pausing", "StepCompleted", "StepCompleted", "Promoted"}
				if got := fx.reasons(app); !slices.Equal(got, want) {
					t.Errorf("events %v, want %v", got, want)
				}
			},
		},
		{
			name:     "failed analysis aborts and reverts",
			steps:    steps,
			outcomes: []Outcome{{Phase: Failed, Reason: "error-ratio 0.5 > 0.2"}},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "error-ratio 0.5 > 0.2")
				if got := fx.router.seen(); !slices.Equal(got, []int{20}) {
					t.Errorf("weights = %v, want [20]: the rollout must stop at the failed analysis", got)
				}
				if len(st.Analyses) != 1 || st.Analyses[0].Phase != Failed {
					t.Errorf("analyses = %+v, want one Failed", st.Analyses)
				}
			},
		},
		{
			name:     "analysis error aborts",
			steps:    steps,
			outcomes: []Outcome{{Reason: "prometheus unreachable"}}, // no phase: Analyze fails
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "prometheus unreachable")
				if len(st.Analyses) != 1 || st.Analyses[0].Phase != Error {
					t.Errorf("analyses = %+v, want one Error", st.Analyses)
				}
			},
		},
		{
			name:     "inconclusive pauses until promoted",
			steps:    steps,
			outcomes: []Outcome{{Phase: Inconclusive, Reason: "no traffic yet"}},
			drive: func(t *testing.T, fx *fixture) {
				st := fx.waitPaused(t)
				if st.Weight != 20 || !strings.Contains(st.Message, "no traffic yet") {
					t.Errorf("paused status = %+v, want weight 20 and the reason", st)
				}
				if err := fx.ctl.Promote(env, app); err != nil {
					t.Fatalf("Promote: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{20, 50, 100}) {
					t.Errorf("weights = %v, want [20 50 100]", got)
				}
				if len(st.Analyses) != 2 || st.Analyses[0].Phase != Inconclusive || st.Analyses[1].Phase != Successful {
					t.Errorf("analyses = %+v, want Inconclusive then Successful", st.Analyses)
				}
			},
		},
		{
			name:     "inconclusive analysis retried runs afresh",
			steps:    steps,
			outcomes: []Outcome{{Phase: Inconclusive, Reason: "no traffic yet"}},
			drive: func(t *testing.T, fx *fixture) {
				fx.waitPaused(t)
				if err := fx.ctl.Retry(env, app); err != nil {
					t.Fatalf("Retry: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				calls := fx.analyzer.calls()
				if len(calls) != 3 || calls[0].Name == calls[1].Name {
					t.Fatalf("analysis requests = %+v, want the first step's analysis twice under new names, then the second", calls)
				}
				if len(st.Analyses) != 3 || st.Analyses[0].Phase != Inconclusive || st.Analyses[1].Phase != Successful {
					t.Errorf("analyses = %+v, want Inconclusive kept beside the retried run", st.Analyses)
				}
			},
		},
		{
			name: "abort during a pause",
			steps: `
      - setWeight: 20
      - pause: {}
      - setWeight: 100
`,
			drive: func(t *testing.T, fx *fixture) {
				st := fx.waitPaused(t)
				if st.Step != 1 || st.Weight != 20 {
					t.Errorf("paused status = %+v, want step 1 at weight 20", st)
				}
				// The real gateway splits exactly: 2 of 10 to the canary.
				if got := fx.hits(t, 10); got["200 canary"] != 2 || got["200 stable"] != 8 {
					t.Errorf("answers at weight 20 = %v, want 2 canary and 8 stable", got)
				}
				if err := fx.ctl.Abort(env, app, "operator saw errors"); err != nil {
					t.Fatalf("Abort: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "aborted by request: operator saw errors")
				if got := fx.router.seen(); !slices.Equal(got, []int{20}) {
					t.Errorf("weights = %v, want [20]", got)
				}
			},
		},
		{
			name: "indefinite pause continues when promoted",
			steps: `
      - setWeight: 30
      - pause: {}
`,
			drive: func(t *testing.T, fx *fixture) {
				fx.waitPaused(t)
				if err := fx.ctl.Promote(env, app); err != nil {
					t.Fatalf("Promote: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{30, 100}) {
					t.Errorf("weights = %v, want [30 100]", got)
				}
			},
		},
		{
			name:  "timed pause ends by itself or by a promote",
			steps: "      - setWeight: 30\n      - pause: {duration: 1h}\n      - setWeight: 60\n      - pause: {duration: 1h}\n",
			drive: func(t *testing.T, fx *fixture) {
				fx.waitMessage(t, "step 2/4: pause 1h")
				fx.clk.Step(time.Hour) // the first pause runs out
				fx.waitMessage(t, "step 4/4: pause 1h")
				if err := fx.ctl.Promote(env, app); err != nil { // the second one is cut short
					t.Fatalf("Promote during a timed pause: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{30, 60, 100}) {
					t.Errorf("weights = %v, want [30 60 100]", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.outcomes)
			fx.start(t, parseSpec(t, tt.steps))
			if tt.drive != nil {
				tt.drive(t, fx)
			}
			tt.assert(t, fx, fx.wait(t))
		})
	}
}

func TestControllerWithoutRollout(t *testing.T) {
	fx := newFixture(t, nil)
	fx.run(t)
	tests := []struct {
		name string
		call func() error
	}{
		{"promote", func() error { return fx.ctl.Promote(env, app) }},
		{"promote full", func() error { return fx.ctl.PromoteFull(env, app) }},
		{"abort", func() error { return fx.ctl.Abort(env, app, "why") }},
		{"abort version", func() error { return fx.ctl.AbortVersion(env, app, canaryVersion, "why") }},
		{"retry", func() error { return fx.ctl.Retry(env, app) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrNoRollout) {
				t.Fatalf("err = %v, want ErrNoRollout", err)
			}
		})
	}
}

func TestRetryNeedsAPause(t *testing.T) {
	fx := newFixture(t, nil)
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - pause: {duration: 1h}\n"))
	fx.waitMessage(t, "pause 1h")
	if err := fx.ctl.Retry(env, app); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("Retry during a timed pause: err = %v, want ErrNotPaused", err)
	}
	if err := fx.ctl.Abort(env, app, "done"); err != nil {
		t.Fatal(err)
	}
	fx.assertAborted(t, fx.wait(t), "aborted by request: done")
}

func TestAbortDuringAnalysis(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - analysis: {templates: [{templateName: t}]}\n"))
	fx.until(t, "analysis start", func() bool { return len(fx.analyzer.calls()) > 0 })
	if err := fx.ctl.Promote(env, app); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("Promote during an analysis: err = %v, want ErrNotPaused", err)
	}
	if err := fx.ctl.Abort(env, app, "bad canary"); err != nil {
		t.Fatal(err)
	}
	st := fx.wait(t)
	fx.assertAborted(t, st, "aborted by request: bad canary")
	if len(st.Analyses) != 1 || st.Analyses[0].Phase != Error || !strings.Contains(st.Analyses[0].Reason, "bad canary") {
		t.Errorf("analyses = %+v, want the run stopped with the abort's reason", st.Analyses)
	}
}

// BenchmarkFailingVerdictToStable measures the time from an analysis run's
// Failed verdict to the gateway sending all traffic to stable (reported as
// ns/op; git revert and canary shutdown come after and are not included).
func BenchmarkFailingVerdictToStable(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		fx := newFixture(b, []Outcome{{Phase: Failed, Reason: "error ratio 0.4 > 0.2"}})
		fx.start(b, parseSpec(b, "      - setWeight: 50\n      - analysis: {templates: [{templateName: t}]}\n"))
		fx.wait(b)
		fx.stop()
		fx.router.mu.Lock()
		stableAt := fx.router.stableAt
		fx.router.mu.Unlock()
		fx.analyzer.mu.Lock()
		verdictAt := fx.analyzer.verdictAt
		fx.analyzer.mu.Unlock()
		total += stableAt.Sub(verdictAt)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns-to-stable/op")
}

func TestBackgroundAnalysis(t *testing.T) {
	tests := []struct {
		name     string
		steps    string
		starting int
		outcomes []Outcome
		drive    func(t *testing.T, fx *fixture)
		assert   func(t *testing.T, fx *fixture, st Status)
	}{
		{
			name:     "inconclusive pauses until promoted",
			steps:    "      - setWeight: 10\n      - pause: {duration: 100ms}\n      - setWeight: 20\n",
			outcomes: []Outcome{{Phase: Inconclusive, Reason: "no data"}},
			drive: func(t *testing.T, fx *fixture) {
				st := fx.waitPaused(t)
				if !strings.Contains(st.Message, "background analysis inconclusive") {
					t.Fatalf("paused for another reason: %s", st.Message)
				}
				if err := fx.ctl.Promote(env, app); err != nil {
					t.Fatal(err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) { fx.assertPromoted(t, st) },
		},
		{
			name:     "inconclusive retried runs afresh",
			steps:    "      - setWeight: 10\n      - pause: {}\n",
			outcomes: []Outcome{{Phase: Inconclusive, Reason: "no data"}, {Phase: blockUntilCancelled}},
			drive: func(t *testing.T, fx *fixture) {
				fx.waitMessage(t, "background analysis inconclusive")
				if err := fx.ctl.Retry(env, app); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the retried run", func() bool { return len(fx.analyzer.calls()) == 2 })
				fx.waitMessage(t, "paused until promoted")
				if err := fx.ctl.Promote(env, app); err != nil {
					t.Fatal(err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				calls := fx.analyzer.calls()
				if len(calls) != 2 || calls[0].Name == calls[1].Name || !strings.Contains(calls[1].Name, "background") {
					t.Fatalf("analysis requests %+v, want two background runs", calls)
				}
				// The second run was still going at the promotion:
				// terminated, as Argo Rollouts does.
				if len(st.Analyses) != 2 || st.Analyses[0].Phase != Inconclusive || st.Analyses[1].Phase != Successful {
					t.Errorf("analyses = %+v, want Inconclusive, then the retried run terminated Successful", st.Analyses)
				}
			},
		},
		{
			name:     "failed aborts",
			steps:    "      - setWeight: 10\n      - setWeight: 20\n      - pause: {}\n",
			starting: 1,
			outcomes: []Outcome{{Phase: Failed, Reason: "latency 900ms > 500ms"}},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "background analysis web-"+canaryVersion+"-background-1 Failed: latency 900ms > 500ms")
				calls := fx.analyzer.calls()
				if len(calls) != 1 {
					t.Fatalf("analysis requests %+v, want one", calls)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.outcomes)
			spec := parseSpec(t, tt.steps)
			spec.Strategy.Canary.Analysis = &appspec.BackgroundAnalysis{Templates: []appspec.TemplateRef{{TemplateName: "t"}}, StartingStep: tt.starting}
			fx.start(t, spec)
			if tt.drive != nil {
				tt.drive(t, fx)
			}
			tt.assert(t, fx, fx.wait(t))
		})
	}
}

func TestPromoteFullSkipsRemainingSteps(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - analysis: {templates: [{templateName: t}]}\n      - setWeight: 30\n      - pause: {}\n"))
	fx.until(t, "analysis start", func() bool { return len(fx.analyzer.calls()) > 0 })
	if err := fx.ctl.PromoteFull(env, app); err != nil {
		t.Fatal(err)
	}
	st := fx.wait(t)
	fx.assertPromoted(t, st)
	if w := fx.router.seen(); slices.Contains(w, 30) {
		t.Fatalf("weights %v: the skipped setWeight 30 ran", w)
	}
	if len(st.Analyses) != 1 || st.Analyses[0].Phase != Successful || !strings.Contains(st.Analyses[0].Reason, "terminated") {
		t.Errorf("analyses = %+v, want the run terminated at the promotion", st.Analyses)
	}
}
