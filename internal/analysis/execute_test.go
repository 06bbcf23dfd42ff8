package analysis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// stepClock is a virtual clock: After advances it by the duration and fires
// at once, so a run's schedule is exact and tests never sleep.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

// stepEpoch is when every stepClock starts.
var stepEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func newStepClock() *stepClock {
	return &stepClock{now: stepEpoch}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// answer is one scripted provider response.
type answer struct {
	values []float64
	err    error
}

// scripted is a hand-written Provider that answers from a script, repeating
// the last answer, and can run a hook on a given call.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	calls   int
	at      []time.Time
	queries []string
	onCall  map[int]func() // by call number, from 1
}

func (p *scripted) Query(ctx context.Context, query string, at time.Time) ([]float64, error) {
	p.mu.Lock()
	p.calls++
	n := p.calls
	p.at = append(p.at, at)
	p.queries = append(p.queries, query)
	a := p.answers[min(n, len(p.answers))-1]
	hook := p.onCall[n]
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return a.values, a.err
}

// recorder is an Observer keeping what it was told.
type recorder struct {
	mu  sync.Mutex
	got map[string][]Measurement
}

func (r *recorder) Measured(_ context.Context, metric string, m Measurement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]Measurement{}
	}
	r.got[metric] = append(r.got[metric], m)
}

func ok(v ...float64) answer { return answer{values: v} }

func TestExecute(t *testing.T) {
	queryErr := errors.New("connection refused")
	base := Metric{Name: "rate", Query: "q", SuccessCondition: "result[0] <= 0.2", ConsecutiveErrorLimit: DefaultConsecutiveErrorLimit}
	with := func(f func(*Metric)) Metric {
		m := base
		f(&m)
		return m
	}
	tests := []struct {
		name     string
		metrics  []Metric
		answers  map[string][]answer // by query
		previous map[string][]Measurement
		cancel   map[int]error // cancel ctx with this cause on the Nth call
		want     Phase
		wantErr  error
		assert   func(t *testing.T, res Result, p map[string]*scripted, obs *recorder, start time.Time)
	}{
		{
			name:    "success after count, on schedule",
			metrics: []Metric{with(func(m *Metric) { m.Interval, m.Count, m.InitialDelay = 10*time.Second, 3, 5*time.Second })},
			answers: map[string][]answer{"q": {ok(0.1)}},
			want:    PhaseSuccessful,
			assert: func(t *testing.T, res Result, p map[string]*scripted, obs *recorder, start time.Time) {
				want := []time.Time{start.Add(5 * time.Second), start.Add(15 * time.Second), start.Add(25 * time.Second)}
				if fmt.Sprint(p["q"].at) != fmt.Sprint(want) {
					t.Errorf("queried at %v, want %v", p["q"].at, want)
				}
				if n := len(obs.got["rate"]); n != 3 {
					t.Errorf("observer saw %d measurements, want 3", n)
				}
				if v := res.Metrics[0].Measurements[0].Value; v != "[0.1]" {
					t.Errorf("value = %q", v)
				}
			},
		},
		{
			name:    "failure after failureLimit",
			metrics: []Metric{with(func(m *Metric) { m.Interval, m.FailureLimit = 10*time.Second, 2 })},
			answers: map[string][]answer{"q": {ok(0.1), ok(0.5)}},
			want:    PhaseFailed,
			assert: func(t *testing.T, res Result, p map[string]*scripted, _ *recorder, _ time.Time) {
				if p["q"].calls != 4 {
					t.Errorf("%d queries, want 4 (1 success, 3 failures)", p["q"].calls)
				}
				for _, s := range []string{`metric "rate" Failed`, "3 failed measurements, more than failureLimit 2", "[0.5]"} {
					if !strings.Contains(res.Reason, s) {
						t.Errorf("reason %q lacks %q", res.Reason, s)
					}
				}
			},
		},
		{
			name:    "no data is inconclusive",
			metrics: []Metric{with(func(m *Metric) { m.Interval = 10 * time.Second })},
			answers: map[string][]answer{"q": {ok()}},
			want:    PhaseInconclusive,
			assert: func(t *testing.T, res Result, _ map[string]*scripted, _ *recorder, _ time.Time) {
				if !strings.Contains(res.Reason, "no data") {
					t.Errorf("reason = %q", res.Reason)
				}
			},
		},
		{
			name:    "ErrNoData is inconclusive",
			metrics: []Metric{base},
			answers: map[string][]answer{"q": {{err: fmt.Errorf("wrapped: %w", ErrNoData)}}},
			want:    PhaseInconclusive,
		},
		{
			name:    "fifth consecutive error fails the run",
			metrics: []Metric{with(func(m *Metric) { m.Interval = time.Second })},
			answers: map[string][]answer{"q": {{err: queryErr}}},
			want:    PhaseFailed,
			assert: func(t *testing.T, res Result, p map[string]*scripted, _ *recorder, _ time.Time) {
				if p["q"].calls != 5 || res.Metrics[0].Phase != PhaseError {
					t.Errorf("%d calls, metric %s; want 5, Error", p["q"].calls, res.Metrics[0].Phase)
				}
				if !strings.Contains(res.Reason, "connection refused") {
					t.Errorf("reason = %q", res.Reason)
				}
			},
		},
		{
			name:    "error without interval retried after 10s",
			metrics: []Metric{base},
			answers: map[string][]answer{"q": {{err: queryErr}, ok(0)}},
			want:    PhaseSuccessful,
			assert: func(t *testing.T, res Result, p map[string]*scripted, _ *recorder, start time.Time) {
				want := []time.Time{start, start.Add(DefaultErrorRetryInterval)}
				if fmt.Sprint(p["q"].at) != fmt.Sprint(want) {
					t.Errorf("queried at %v, want %v", p["q"].at, want)
				}
			},
		},
		{
			name:    "resume counts previous measurements",
			metrics: []Metric{with(func(m *Metric) { m.Interval, m.FailureLimit, m.InitialDelay = 10*time.Second, 2, time.Hour })},
			answers: map[string][]answer{"q": {ok(0.9)}},
			previous: map[string][]Measurement{"rate": {
				{Phase: PhaseFailed, FinishedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(-15 * time.Second)},
				{Phase: PhaseFailed, FinishedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(-5 * time.Second)},
			}},
			want: PhaseFailed,
			assert: func(t *testing.T, res Result, p map[string]*scripted, obs *recorder, start time.Time) {
				if p["q"].calls != 1 || len(obs.got["rate"]) != 1 || len(res.Metrics[0].Measurements) != 3 {
					t.Errorf("calls %d, observed %d, measurements %d; want 1, 1, 3", p["q"].calls, len(obs.got["rate"]), len(res.Metrics[0].Measurements))
				}
				// Due 10s after the last previous one: 5s from now, no initial delay.
				if want := start.Add(5 * time.Second); !p["q"].at[0].Equal(want) {
					t.Errorf("queried at %v, want %v", p["q"].at[0], want)
				}
			},
		},
		{
			name: "one metric failing stops the others",
			metrics: []Metric{
				with(func(m *Metric) { m.Name, m.Query, m.Interval = "good", "good", time.Second }),
				with(func(m *Metric) { m.Name, m.Query, m.Interval, m.FailureLimit = "bad", "bad", time.Second, 1 }),
			},
			answers: map[string][]answer{"good": {ok(0)}, "bad": {ok(1)}},
			want:    PhaseFailed,
			assert: func(t *testing.T, res Result, _ map[string]*scripted, _ *recorder, _ time.Time) {
				if res.Metrics[0].Phase != PhaseSuccessful || res.Metrics[1].Phase != PhaseFailed {
					t.Errorf("metric phases %s %s", res.Metrics[0].Phase, res.Metrics[1].Phase)
				}
				if !strings.Contains(res.Metrics[0].Reason, "run terminated") {
					t.Errorf("good reason = %q", res.Metrics[0].Reason)
				}
			},
		},
		{
			name: "inconclusive beats success",
			metrics: []Metric{
				with(func(m *Metric) { m.Name, m.Query = "good", "good" }),
				with(func(m *Metric) { m.Name, m.Query = "empty", "empty" }),
			},
			answers: map[string][]answer{"good": {ok(0)}, "empty": {ok()}},
			want:    PhaseInconclusive,
		},
		{
			name:    "terminated on purpose: successful, no error",
			metrics: []Metric{with(func(m *Metric) { m.Interval = 10 * time.Second })},
			answers: map[string][]answer{"q": {ok(0)}},
			cancel:  map[int]error{4: ErrTerminated},
			want:    PhaseSuccessful,
			assert: func(t *testing.T, res Result, _ map[string]*scripted, obs *recorder, _ time.Time) {
				if n := len(res.Metrics[0].Measurements); n != 3 {
					t.Errorf("%d measurements, want 3 (the interrupted 4th dropped)", n)
				}
				if !strings.Contains(res.Reason, "all 1 metrics successful") || !strings.Contains(res.Metrics[0].Reason, "run terminated after 3") {
					t.Errorf("reasons %q / %q", res.Reason, res.Metrics[0].Reason)
				}
			},
		},
		{
			name:    "context cancelled: error",
			metrics: []Metric{with(func(m *Metric) { m.Interval = 10 * time.Second })},
			answers: map[string][]answer{"q": {ok(0)}},
			cancel:  map[int]error{2: errors.New("shutting down")},
			want:    PhaseSuccessful,
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			providers := map[string]*scripted{}
			for q, a := range tt.answers {
				p := &scripted{answers: a, onCall: map[int]func(){}}
				for n, cause := range tt.cancel {
					p.onCall[n] = func() { cancel(cause) }
				}
				providers[q] = p
			}
			// Metrics are routed to their provider by query, through one
			// ProviderFor that hands out a dispatcher.
			dispatch := providerFunc(func(ctx context.Context, q string, at time.Time) ([]float64, error) {
				return providers[q].Query(ctx, q, at)
			})
			clock := newStepClock()
			start := clock.Now()
			run := &Run{Name: "r", Metrics: tt.metrics, Clock: clock}
			obs := &recorder{}
			res, err := run.Execute(ctx, func(address string) (Provider, error) { return dispatch, nil }, obs, tt.previous)
			if !errors.Is(err, tt.wantErr) || (err != nil && tt.wantErr == nil) {
				t.Fatalf("Execute err = %v, want %v", err, tt.wantErr)
			}
			if res.Phase != tt.want {
				t.Fatalf("phase = %s (%s), want %s", res.Phase, res.Reason, tt.want)
			}
			if tt.assert != nil {
				tt.assert(t, res, providers, obs, start)
			}
		})
	}
}

type providerFunc func(ctx context.Context, q string, at time.Time) ([]float64, error)

func (f providerFunc) Query(ctx context.Context, q string, at time.Time) ([]float64, error) {
	return f(ctx, q, at)
}

func TestExecuteBadInput(t *testing.T) {
	noProvider := func(address string) (Provider, error) { return nil, fmt.Errorf("no provider for %q", address) }
	tests := []struct {
		name      string
		run       *Run
		providers ProviderFor
		wantErr   string
	}{
		{name: "no metrics", run: &Run{Name: "r"}, providers: noProvider, wantErr: "no metric"},
		{name: "nil providers", run: &Run{Name: "r", Metrics: []Metric{{Name: "m"}}}, wantErr: "no provider"},
		{name: "unknown address", run: &Run{Name: "r", Metrics: []Metric{{Name: "m", Address: "http://x"}}}, providers: noProvider, wantErr: `no provider for "http://x"`},
		{name: "bad condition", run: &Run{Name: "r", Metrics: []Metric{{Name: "m", SuccessCondition: "result >"}}}, providers: noProvider, wantErr: "successCondition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.run.Execute(context.Background(), tt.providers, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
