package analysis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const minSamplesDoc = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: rate
  annotations:
    runway.io/min-samples: "%s"
spec:
  args: [{name: env}, {name: app}, {name: version}]
  metrics:
    - name: error-ratio
      successCondition: result[0] <= 0.2
      provider:
        prometheus:
          query: errors{version="{{args.version}}"}
`

// samplesRun resolves minSamplesDoc with min-samples min and the extra
// metric and annotation lines into a run on clock.
func samplesRun(t *testing.T, min, annotations, metric string, clock Clock) *Run {
	t.Helper()
	text := strings.Replace(minSamplesDoc, "%s", min, 1)
	text = strings.Replace(text, "  annotations:\n", "  annotations:\n"+annotations, 1)
	text = strings.Replace(text, "      successCondition:", metric+"      successCondition:", 1)
	tpl, err := ParseTemplate([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	run, err := NewRun("r", []*Template{tpl}, map[string]string{"env": "production", "app": "web", "version": "v2"})
	if err != nil {
		t.Fatal(err)
	}
	run.Clock = clock
	return run
}

func TestMinSamples(t *testing.T) {
	countErr := errors.New("connection refused")
	tests := []struct {
		name        string
		min         string
		annotations string // more annotation lines
		metric      string // more metric lines (interval, count, limits)
		samples     []answer
		values      []answer
		previous    []Measurement
		want        Phase
		wantReason  string
		assert      func(t *testing.T, res Result, samples, values *scripted, start time.Time)
	}{
		{
			name: "enough samples: judged at once", min: "20",
			samples: []answer{ok(25)}, values: []answer{ok(0.5)},
			want: PhaseFailed, wantReason: "1 failed measurements",
		},
		{
			name: "healthy with enough samples", min: "1",
			samples: []answer{ok(1)}, values: []answer{ok(0.1)},
			want: PhaseSuccessful,
		},
		{
			name: "too few, then enough: retaken until judged", min: "20",
			samples: []answer{{err: ErrNoData}, ok(3), ok(19.96), ok(25)}, values: []answer{ok(0.1)},
			want: PhaseSuccessful, wantReason: "all 1 metrics successful",
			assert: func(t *testing.T, res Result, samples, values *scripted, start time.Time) {
				ms := res.Metrics[0].Measurements
				if len(ms) != 4 {
					t.Fatalf("%d measurements, want 4: %+v", len(ms), ms)
				}
				wantReasons := []string{
					"not counted: 0 of 20 samples, no data (runway.io/min-samples); waited 0s of 10m0s",
					"not counted: 3 of 20 samples (runway.io/min-samples); waited 10s of 10m0s",
					"not counted: 19.9 of 20 samples (runway.io/min-samples); waited 20s of 10m0s",
				}
				for i, want := range wantReasons {
					if !ms[i].NotCounted || ms[i].Phase != PhaseInconclusive || ms[i].Reason != want {
						t.Errorf("measurement %d = %+v, want not counted, Inconclusive, %q", i, ms[i], want)
					}
				}
				if ms[3].NotCounted || ms[3].Phase != PhaseSuccessful {
					t.Errorf("last measurement = %+v, want counted and Successful", ms[3])
				}
				// No interval: retaken every DefaultSamplesRetryInterval; the
				// metric's own query only once there are samples enough.
				r := DefaultSamplesRetryInterval
				wantAt := []time.Time{start, start.Add(r), start.Add(2 * r), start.Add(3 * r)}
				if fmt.Sprint(samples.at) != fmt.Sprint(wantAt) {
					t.Errorf("samples counted at %v, want %v", samples.at, wantAt)
				}
				if fmt.Sprint(values.at) != fmt.Sprint(wantAt[3:]) {
					t.Errorf("metric queried at %v, want %v", values.at, wantAt[3:])
				}
				if !strings.Contains(res.Metrics[0].Reason, "3 not counted") {
					t.Errorf("metric reason %q does not tell the not counted", res.Metrics[0].Reason)
				}
			},
		},
		{
			name: "not counted count towards neither count nor the limits", min: "20",
			metric:  "      interval: 10s\n      count: 2\n",
			samples: []answer{ok(3), ok(25), ok(3), ok(3), ok(25)}, values: []answer{ok(0.1)},
			want: PhaseSuccessful,
			assert: func(t *testing.T, res Result, samples, values *scripted, start time.Time) {
				if got := notCountedPattern(res.Metrics[0].Measurements); got != "NSNNS" {
					t.Errorf("measurements %s, want NSNNS", got)
				}
				if values.calls != 2 {
					t.Errorf("metric queried %d times, want 2", values.calls)
				}
			},
		},
		{
			name: "data never comes: Inconclusive once the wait is over", min: "20",
			annotations: "    runway.io/min-samples-wait: 1m\n",
			metric:      "      interval: 10s\n      count: 3\n      inconclusiveLimit: 1\n",
			samples:     []answer{ok(3)}, values: []answer{ok(0.1)},
			want: PhaseInconclusive, wantReason: "only 3 of 20 samples after waiting 1m0s (runway.io/min-samples-wait)",
			assert: func(t *testing.T, res Result, samples, values *scripted, start time.Time) {
				// 0s..50s not counted, 60s counts; the streak starts anew
				// at 70s and 130s counts again: the second inconclusive.
				want := "NNNNNNI" + "NNNNNNI"
				if got := notCountedPattern(res.Metrics[0].Measurements); got != want {
					t.Errorf("measurements %s, want %s", got, want)
				}
				if values.calls != 0 {
					t.Errorf("metric queried %d times without samples", values.calls)
				}
			},
		},
		{
			name: "the wait restarts after a counted measurement", min: "20",
			annotations: "    runway.io/min-samples-wait: 30s\n",
			metric:      "      interval: 10s\n      count: 5\n",
			samples:     []answer{ok(25), ok(25), ok(3)}, values: []answer{ok(0.1)},
			want: PhaseInconclusive,
			assert: func(t *testing.T, res Result, samples, values *scripted, start time.Time) {
				if got := notCountedPattern(res.Metrics[0].Measurements); got != "SSNNNI" {
					t.Errorf("measurements %s, want SSNNNI", got)
				}
			},
		},
		{
			name: "resumed: the wait counts from the first not counted before the restart", min: "20",
			annotations: "    runway.io/min-samples-wait: 1m\n",
			metric:      "      interval: 10s\n",
			previous: []Measurement{
				{Phase: PhaseInconclusive, NotCounted: true, StartedAt: stepEpoch.Add(-50 * time.Second), FinishedAt: stepEpoch.Add(-50 * time.Second)},
				{Phase: PhaseInconclusive, NotCounted: true, StartedAt: stepEpoch.Add(-10 * time.Second), FinishedAt: stepEpoch.Add(-10 * time.Second)},
			},
			samples: []answer{ok(3)}, values: []answer{ok(0.1)},
			want: PhaseInconclusive, wantReason: "after waiting 1m0s",
			assert: func(t *testing.T, res Result, samples, values *scripted, start time.Time) {
				// Due at the start, 50s into the wait: not counted; 10s
				// later the minute is over.
				if got := notCountedPattern(res.Metrics[0].Measurements); got != "NNNI" {
					t.Errorf("measurements %s, want NNNI", got)
				}
				wantAt := []time.Time{start, start.Add(10 * time.Second)}
				if fmt.Sprint(samples.at) != fmt.Sprint(wantAt) {
					t.Errorf("samples counted at %v, want %v", samples.at, wantAt)
				}
			},
		},
		{
			name: "counting samples fails: errors, as Argo Rollouts counts them", min: "20",
			metric:  "      interval: 10s\n",
			samples: []answer{{err: countErr}}, values: []answer{ok(0.1)},
			want: PhaseFailed, wantReason: "5 consecutive errors",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newStepClock()
			start := clock.Now()
			run := samplesRun(t, tt.min, tt.annotations, tt.metric, clock)
			if q := run.Metrics[0].SamplesQuery; !strings.Contains(q, `version="v2"`) || !strings.Contains(q, `env="production"`) {
				t.Fatalf("samples query not substituted: %s", q)
			}
			samples := &scripted{answers: tt.samples}
			values := &scripted{answers: tt.values}
			dispatch := providerFunc(func(ctx context.Context, q string, at time.Time) ([]float64, error) {
				if q == run.Metrics[0].SamplesQuery {
					return samples.Query(ctx, q, at)
				}
				return values.Query(ctx, q, at)
			})
			var previous map[string][]Measurement
			if tt.previous != nil {
				previous = map[string][]Measurement{"error-ratio": tt.previous}
			}
			res, err := run.Execute(context.Background(), func(string) (Provider, error) { return dispatch, nil }, nil, previous)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != tt.want || !strings.Contains(res.Reason, tt.wantReason) {
				t.Fatalf("result %s %q, want %s containing %q", res.Phase, res.Reason, tt.want, tt.wantReason)
			}
			if tt.assert != nil {
				tt.assert(t, res, samples, values, start)
			}
		})
	}
}

// notCountedPattern writes measurements as letters: N not counted, else
// the phase's initial.
func notCountedPattern(ms []Measurement) string {
	var b strings.Builder
	for _, m := range ms {
		if m.NotCounted {
			b.WriteByte('N')
			continue
		}
		b.WriteByte(string(m.Phase)[0])
	}
	return b.String()
}

func TestMinSamplesAnnotationErrors(t *testing.T) {
	for _, bad := range []string{"0", "-3", "many", ""} {
		if _, err := ParseTemplate([]byte(strings.Replace(minSamplesDoc, "%s", bad, 1))); err == nil || !strings.Contains(err.Error(), AnnotationMinSamples) {
			t.Errorf("min-samples %q: err = %v, want one naming the annotation", bad, err)
		}
	}
}

func TestMinSamplesWaitAnnotationErrors(t *testing.T) {
	for _, bad := range []string{"0s", "-1m", "ten minutes", `""`} {
		text := strings.Replace(minSamplesDoc, "%s", "5", 1)
		text = strings.Replace(text, "  annotations:\n", "  annotations:\n    runway.io/min-samples-wait: "+bad+"\n", 1)
		if _, err := ParseTemplate([]byte(text)); err == nil || !strings.Contains(err.Error(), AnnotationMinSamplesWait) {
			t.Errorf("min-samples-wait %q: err = %v, want one naming the annotation", bad, err)
		}
	}
}

// stillClock never moves: time can bound nothing.
type stillClock struct{ t time.Time }

func (c stillClock) Now() time.Time { return c.t }
func (c stillClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

func TestMinSamplesBoundedWhenTimeStandsStill(t *testing.T) {
	run := samplesRun(t, "20", "", "      interval: 10s\n", stillClock{t: stepEpoch})
	samples := &scripted{answers: []answer{ok(3)}}
	res, err := run.Execute(context.Background(), func(string) (Provider, error) { return samples, nil }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// As many retakes as fit in the default wait at a 10s interval, and one
	// that counts.
	want := int(DefaultMinSamplesWait/(10*time.Second)) + 2
	if res.Phase != PhaseInconclusive || samples.calls != want {
		t.Errorf("result %s (%s) after %d measurements; want Inconclusive after %d", res.Phase, res.Reason, samples.calls, want)
	}
}

func TestMinSamplesTerminatedWhileWaiting(t *testing.T) {
	// Argo Rollouts' terminate: a metric that has not failed is
	// Successful, even with nothing counted yet.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	run := samplesRun(t, "20", "", "      interval: 10s\n", newStepClock())
	samples := &scripted{answers: []answer{ok(3)}, onCall: map[int]func(){4: func() { cancel(ErrTerminated) }}}
	res, err := run.Execute(ctx, func(string) (Provider, error) { return samples, nil }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != PhaseSuccessful || !strings.Contains(res.Metrics[0].Reason, "run terminated after 3 measurements (0 successful, 0 failed, 0 inconclusive, 0 errors, 3 not counted)") {
		t.Errorf("result %s, metric reason %q", res.Phase, res.Metrics[0].Reason)
	}
}
