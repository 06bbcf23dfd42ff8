package reporter_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// newReporter returns a Reporter on a fresh SQLite file, and the file's path.
func newReporter(t *testing.T) (*reporter.Reporter, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runway.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return reporter.New(db, nil), path
}

// step is one action on a Reporter.
type step struct {
	submit  []string // Submit these apps when set
	app     string   // else Update this app
	success bool
	message string
}

func run(t *testing.T, r *reporter.Reporter, workflow string, steps []step) {
	t.Helper()
	for _, s := range steps {
		var err error
		if s.submit != nil {
			err = r.Submit(t.Context(), workflow, s.submit)
		} else {
			err = r.Update(t.Context(), workflow, s.app, s.success, s.message)
		}
		if err != nil {
			t.Fatalf("step %+v: %v", s, err)
		}
	}
}

func TestPhases(t *testing.T) {
	tests := []struct {
		name       string
		steps      []step
		wantPhase  reporter.Phase
		wantReason string // substring
	}{
		{
			name:      "nothing reported",
			steps:     []step{{submit: []string{"homelabping", "postgres"}}},
			wantPhase: reporter.PhasePending,
		},
		{
			name: "all success",
			steps: []step{
				{submit: []string{"homelabping", "postgres"}},
				{app: "postgres", success: true},
				{app: "homelabping", success: true},
			},
			wantPhase: reporter.PhaseSucceeded,
		},
		{
			name: "some success",
			steps: []step{
				{submit: []string{"homelabping", "postgres"}},
				{app: "postgres", success: true},
			},
			wantPhase:  reporter.PhasePending,
			wantReason: "homelabping",
		},
		{
			name: "first failure wins",
			steps: []step{
				{submit: []string{"a", "b", "c"}},
				{app: "c", success: false, message: "c broke"},
				{app: "a", success: false, message: "a broke"},
			},
			wantPhase:  reporter.PhaseFailed,
			wantReason: "app c reported failure: c broke",
		},
		{
			name: "failure before all reported",
			steps: []step{
				{submit: []string{"a", "b"}},
				{app: "b", success: false},
			},
			wantPhase:  reporter.PhaseFailed,
			wantReason: "app b reported failure",
		},
		{
			name: "report before submit counts",
			steps: []step{
				{app: "postgres", success: true},
				{app: "homelabping", success: true},
				{submit: []string{"homelabping", "postgres"}},
			},
			wantPhase: reporter.PhaseSucceeded,
		},
		{
			name: "unknown app ignored",
			steps: []step{
				{submit: []string{"homelabping"}},
				{app: "intruder", success: false, message: "not mine"},
			},
			wantPhase:  reporter.PhasePending,
			wantReason: "homelabping",
		},
		{
			name: "resubmit replaces apps",
			steps: []step{
				{submit: []string{"a", "b"}},
				{app: "a", success: true},
				{submit: []string{"a"}},
			},
			wantPhase: reporter.PhaseSucceeded,
		},
		{
			name: "resubmit adds an app",
			steps: []step{
				{submit: []string{"a"}},
				{app: "a", success: true},
				{submit: []string{"a", "b"}},
			},
			wantPhase:  reporter.PhasePending,
			wantReason: "b",
		},
		{
			name: "last report of an app wins",
			steps: []step{
				{submit: []string{"a"}},
				{app: "a", success: false, message: "not yet"},
				{app: "a", success: true},
			},
			wantPhase: reporter.PhaseSucceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReporter(t)
			run(t, r, "wf", tt.steps)
			exp, err := r.Get(t.Context(), "wf")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if exp.Phase != tt.wantPhase || !strings.Contains(exp.Reason, tt.wantReason) {
				t.Errorf("phase %s reason %q, want %s with %q", exp.Phase, exp.Reason, tt.wantPhase, tt.wantReason)
			}
		})
	}
}

func TestGetUnknown(t *testing.T) {
	r, _ := newReporter(t)
	run(t, r, "wf", []step{{app: "a", success: true}})
	if _, err := r.Get(t.Context(), "wf"); !errors.Is(err, reporter.ErrNotFound) {
		t.Errorf("Get of unsubmitted workflow: %v, want ErrNotFound", err)
	}
}

func TestInvalidInput(t *testing.T) {
	tests := []struct {
		name string
		call func(ctx context.Context, r *reporter.Reporter) error
	}{
		{name: "empty workflow", call: func(ctx context.Context, r *reporter.Reporter) error { return r.Submit(ctx, "", []string{"a"}) }},
		{name: "no apps", call: func(ctx context.Context, r *reporter.Reporter) error { return r.Submit(ctx, "wf", nil) }},
		{name: "duplicate app", call: func(ctx context.Context, r *reporter.Reporter) error { return r.Submit(ctx, "wf", []string{"a", "a"}) }},
		{name: "path in app", call: func(ctx context.Context, r *reporter.Reporter) error { return r.Submit(ctx, "wf", []string{"../etc"}) }},
		{name: "dot dot workflow", call: func(ctx context.Context, r *reporter.Reporter) error { return r.Update(ctx, "..", "a", true, "") }},
		{name: "long app", call: func(ctx context.Context, r *reporter.Reporter) error {
			return r.Update(ctx, "wf", strings.Repeat("a", 129), true, "")
		}},
		{name: "invalid token workflow", call: func(ctx context.Context, r *reporter.Reporter) error {
			_, err := r.Token(ctx, "a/b")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReporter(t)
			if err := tt.call(t.Context(), r); !errors.Is(err, reporter.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if _, err := r.Get(t.Context(), "wf"); !errors.Is(err, reporter.ErrNotFound) {
				t.Errorf("something was stored: Get = %v", err)
			}
		})
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		name       string
		before     []step        // applied before Wait
		during     []step        // applied from another goroutine while waiting
		timeout    time.Duration // deadline of Wait
		wantPhase  reporter.Phase
		wantReason string
	}{
		{
			name:      "already succeeded",
			before:    []step{{submit: []string{"a"}}, {app: "a", success: true}},
			timeout:   time.Hour,
			wantPhase: reporter.PhaseSucceeded,
		},
		{
			name:      "woken by update",
			before:    []step{{submit: []string{"homelabping", "postgres"}}},
			during:    []step{{app: "postgres", success: true}, {app: "homelabping", success: true}},
			timeout:   time.Hour,
			wantPhase: reporter.PhaseSucceeded,
		},
		{
			name:       "woken by failure",
			before:     []step{{submit: []string{"homelabping", "postgres"}}},
			during:     []step{{app: "postgres", success: false, message: "initdb failed"}},
			timeout:    time.Hour,
			wantPhase:  reporter.PhaseFailed,
			wantReason: "app postgres reported failure: initdb failed",
		},
		{
			name:      "woken by submit",
			before:    []step{{app: "a", success: true}},
			during:    []step{{submit: []string{"a"}}},
			timeout:   time.Hour,
			wantPhase: reporter.PhaseSucceeded,
		},
		{
			name:       "deadline names missing apps",
			before:     []step{{submit: []string{"homelabping", "postgres"}}},
			timeout:    time.Millisecond,
			wantPhase:  reporter.PhaseFailed,
			wantReason: "deadline 1ms passed waiting for reports from: homelabping, postgres",
		},
		{
			name:       "deadline after partial reports",
			before:     []step{{submit: []string{"homelabping", "postgres"}}, {app: "postgres", success: true}},
			timeout:    time.Millisecond,
			wantPhase:  reporter.PhaseFailed,
			wantReason: "deadline 1ms passed waiting for reports from: homelabping",
		},
		{
			name:       "deadline never submitted",
			timeout:    time.Millisecond,
			wantPhase:  reporter.PhaseFailed,
			wantReason: "deadline 1ms passed before workflow wf was submitted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReporter(t)
			run(t, r, "wf", tt.before)
			done := make(chan struct{})
			if tt.during != nil {
				go func() {
					defer close(done)
					for _, s := range tt.during {
						var err error
						if s.submit != nil {
							err = r.Submit(context.Background(), "wf", s.submit)
						} else {
							err = r.Update(context.Background(), "wf", s.app, s.success, s.message)
						}
						if err != nil {
							t.Errorf("step %+v: %v", s, err)
						}
					}
				}()
			} else {
				close(done)
			}
			exp, err := r.Wait(t.Context(), "wf", tt.timeout)
			<-done
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if exp.Phase != tt.wantPhase || exp.Reason != tt.wantReason {
				t.Errorf("Wait = %s %q, want %s %q", exp.Phase, exp.Reason, tt.wantPhase, tt.wantReason)
			}
		})
	}
}

func TestWaitCancelled(t *testing.T) {
	r, _ := newReporter(t)
	run(t, r, "wf", []step{{submit: []string{"a"}}})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Wait(ctx, "wf", time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with cancelled ctx: %v, want context.Canceled", err)
	}
}

func TestStatePersistsAcrossReopen(t *testing.T) {
	r, path := newReporter(t)
	run(t, r, "wf", []step{{submit: []string{"a", "b"}}, {app: "a", success: true, message: "healthy"}})

	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	r2 := reporter.New(db, nil)
	exp, err := r2.Get(t.Context(), "wf")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if exp.Phase != reporter.PhasePending || exp.Reports["a"].Message != "healthy" || len(exp.Apps) != 2 {
		t.Errorf("after reopen: %+v", exp)
	}
	if err := r2.Update(t.Context(), "wf", "b", true, ""); err != nil {
		t.Fatal(err)
	}
	exp, err = r2.Wait(t.Context(), "wf", time.Hour)
	if err != nil || exp.Phase != reporter.PhaseSucceeded {
		t.Errorf("Wait after reopen = %+v, %v", exp, err)
	}
}

// Messages from in-process reporters are bounded the same way as those
// that come over HTTP: one line, at most MaxMessage bytes, never an error.
func TestUpdateMessage(t *testing.T) {
	tests := []struct {
		name    string
		message string
		want    string // "" with wantLen: check the length only
		wantLen int
	}{
		{name: "plain", message: "healthy", want: "healthy"},
		{name: "newlines", message: "line one\nSigned-off-by: x <x@y>\n", want: "line one Signed-off-by: x <x@y>"},
		{name: "control characters", message: "a\tb\x1b[31mc\x00d\u2029e", want: "a b [31mc d e"},
		{name: "invalid utf-8", message: "ok\xff\xfe!", want: "ok !"},
		{name: "only blanks", message: " \n\r\t ", want: ""},
		{name: "huge", message: strings.Repeat("m", 65<<10), wantLen: reporter.MaxMessage},
		{name: "cut inside a rune", message: strings.Repeat("€", 400), wantLen: reporter.MaxMessage / 3 * 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReporter(t)
			run(t, r, "wf", []step{{submit: []string{"a"}}, {app: "a", success: false, message: tt.message}})
			exp, err := r.Get(t.Context(), "wf")
			if err != nil {
				t.Fatal(err)
			}
			got := exp.Reports["a"].Message
			switch {
			case tt.wantLen == 0 && got != tt.want:
				t.Errorf("message = %q, want %q", got, tt.want)
			case tt.wantLen != 0 && (len(got) != tt.wantLen || !utf8.ValidString(got)):
				t.Errorf("message of %d bytes (valid %v), want %d", len(got), utf8.ValidString(got), tt.wantLen)
			}
			if strings.ContainsAny(exp.Reason, "\r\n") || len(exp.Reason) > reporter.MaxMessage+64 {
				t.Errorf("reason of %d bytes %q is not one bounded line", len(exp.Reason), exp.Reason)
			}
		})
	}
}

func TestToken(t *testing.T) {
	r, path := newReporter(t)
	ctx := t.Context()
	if _, err := r.Token(ctx, "wf"); !errors.Is(err, reporter.ErrNotFound) {
		t.Fatalf("Token before Submit: %v, want ErrNotFound", err)
	}
	run(t, r, "wf", []step{{submit: []string{"a"}}})
	run(t, r, "other", []step{{submit: []string{"a"}}})
	first, err := r.Token(ctx, "wf")
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 64 || strings.Trim(first, "0123456789abcdef") != "" {
		t.Errorf("token %q is not 32 bytes of hex", first)
	}
	other, err := r.Token(ctx, "other")
	if err != nil || other == first {
		t.Errorf("token of other = %q (%v), want its own", other, err)
	}
	run(t, r, "wf", []step{{submit: []string{"a", "b"}}})
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for name, rr := range map[string]*reporter.Reporter{"again": r, "after resubmit and reopen": reporter.New(db, nil)} {
		if got, err := rr.Token(ctx, "wf"); err != nil || got != first {
			t.Errorf("token %s = %q (%v), want %q", name, got, err, first)
		}
	}
}
