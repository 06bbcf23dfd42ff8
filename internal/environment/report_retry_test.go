package environment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/workload"
)

// refusingReports is a reporter that refuses the first refuse[app]
// reports of app with err (the store busy, say), and counts every
// attempt, taken or not, as "workflow/app/ok|failed".
type refusingReports struct {
	reports
	err      error
	mu       sync.Mutex
	refuse   map[string]int
	attempts []string
}

func (r *refusingReports) Update(ctx context.Context, workflow, app string, ok bool, msg string) error {
	r.mu.Lock()
	state := "ok"
	if !ok {
		state = "failed"
	}
	r.attempts = append(r.attempts, workflow+"/"+app+"/"+state)
	refused := r.refuse[app] > 0
	if refused {
		r.refuse[app]--
	}
	r.mu.Unlock()
	if refused {
		return r.err
	}
	return r.reports.Update(ctx, workflow, app, ok, msg)
}

func (r *refusingReports) tried() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

var errBusy = fmt.Errorf("saving report: %w", errors.New("database is locked (SQLITE_BUSY)"))

// A deploy report the reporter refuses once is sent again by the next
// pass, although the app already serves (or failed at) its version, and
// the pass that left it unsent fails so that its key is retried: for a
// staging app's success, a service's success (staging and production)
// and a production app's failure to resolve.
func TestRefusedReportIsSentAgain(t *testing.T) {
	tests := []struct {
		name string
		m    *manifest.Manifest
		arts Artifacts
		app  string
		want []string // reports taken, in order
	}{
		{
			name: "staging app",
			m:    withApps("stg", map[string]string{"web": "v1"}),
			arts: anyArtifact{}, app: "web",
			want: []string{"wf-stg/web/ok"},
		},
		{
			name: "staging service",
			m:    envManifest("stg"),
			arts: anyArtifact{}, app: "postgres",
			want: []string{"wf-stg/postgres/ok"},
		},
		{
			name: "production service",
			m:    envManifest(manifest.ProductionEnv),
			arts: anyArtifact{}, app: "postgres",
			want: []string{"wf-production/postgres/ok"},
		},
		{
			name: "production app without an artifact",
			m: func() *manifest.Manifest {
				m := withApps(manifest.ProductionEnv, map[string]string{"web": "v1"})
				m.Apps["web"].DeployingWorkflowName = "wf-web"
				return m
			}(),
			arts: &someArtifacts{missing: map[string]bool{"web": true}}, app: "web",
			want: []string{"wf-web/web/failed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &refusingReports{err: errBusy, refuse: map[string]int{tt.app: 1}}
			c := New(newStateRepo(t, nil, tt.m), &fakeRuntime{}, tt.arts, gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{})
			err := c.Reconcile(t.Context())
			if err == nil || !strings.Contains(err.Error(), "not taken by the reporter") {
				t.Fatalf("first pass = %v, want it failed for the unsent report (so it is retried)", err)
			}
			if got := rep.tried(); !slices.Equal(got, tt.want) {
				t.Fatalf("first pass tried %v, want %v once", got, tt.want)
			}
			_ = c.Reconcile(t.Context())
			if got := rep.list(); !slices.Equal(got, tt.want) {
				t.Fatalf("reports taken %v, want %v", got, tt.want)
			}
			for range 2 {
				_ = c.Reconcile(t.Context())
			}
			if got := rep.tried(); len(got) != 2 {
				t.Fatalf("reports tried %v, want the refused one and its resend only", got)
			}
		})
	}
}

// A pass that leaves a report unsent is retried with the work queue's
// backoff, not at the next poll (a thousand hours here): the clock is a
// fake one, and the retry comes as it is stepped.
func TestRefusedReportIsRetriedWithBackoff(t *testing.T) {
	rep := &refusingReports{err: errBusy, refuse: map[string]int{"web": 3}}
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	c := New(newStateRepo(t, nil, withApps("stg", map[string]string{"web": "v1"})), &fakeRuntime{}, anyArtifact{},
		gateway.New(gateway.Options{}), rep, newFakeRollouts(),
		Options{PollInterval: 1000 * time.Hour, RetryInterval: time.Second, Clock: clk})
	run(t, c)
	stepUntil(t, clk, time.Second, "web's report taken", func() bool { return slices.Equal(rep.list(), []string{"wf-stg/web/ok"}) })
	if got := rep.tried(); len(got) != 4 {
		t.Fatalf("reports tried %v, want 3 refused and 1 taken", got)
	}
}

// A report the reporter refuses as invalid (a workflow name it cannot
// take) is given up: no retry makes it valid, and the pass does not fail
// for it.
func TestReportRefusedAsInvalidIsGivenUp(t *testing.T) {
	rep := &refusingReports{err: fmt.Errorf("%w: workflow name %q", reporter.ErrInvalid, "wf stg"), refuse: map[string]int{"web": 1000}}
	c := New(newStateRepo(t, nil, withApps("stg", map[string]string{"web": "v1"})), &fakeRuntime{}, anyArtifact{},
		gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{})
	for i := range 3 {
		if err := c.Reconcile(t.Context()); err != nil {
			t.Fatalf("pass %d: %v", i+1, err)
		}
	}
	if got := rep.tried(); !slices.Equal(got, []string{"wf-stg/web/ok"}) {
		t.Fatalf("reports tried %v, want the invalid one once", got)
	}
}

// A staging start that fails because the runtime is unavailable (its
// data plane restarting) is not the version's failure: the version is
// retried and reported once it serves. Meanwhile, and after, the
// runtime's Status answering nil (it cannot tell) is not read as "no
// replicas".
func TestStagingStartRetriedWhileTheRuntimeIsUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"runtime unavailable", fmt.Errorf("starting web v1 in stg: %w: connection refused", runtime.ErrUnavailable)},
		{"not the version's fault", fmt.Errorf("starting web v1 in stg: %w: its database is being created", workload.ErrRetry)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt := &fakeRuntime{}
			var mu sync.Mutex
			fails := 1
			rt.onStart = func(context.Context, runtime.ReplicaSet) error {
				mu.Lock()
				defer mu.Unlock()
				if fails > 0 {
					fails--
					return tt.err
				}
				return nil
			}
			rep := &reports{}
			c := New(newStateRepo(t, nil, withApps("stg", map[string]string{"web": "v1"})), rt, anyArtifact{},
				gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{})
			if err := c.Reconcile(t.Context()); err == nil {
				t.Fatal("pass with the runtime unavailable succeeded")
			}
			if st := c.Status(); len(st) != 1 || st[0].Apps[0].Failed != "" || len(rep.list()) != 0 {
				t.Fatalf("status %+v, reports %v: want web neither failed nor reported", st, rep.list())
			}
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := rep.list(); !slices.Equal(got, []string{"wf-stg/web/ok"}) {
				t.Fatalf("reports %v, want web's success", got)
			}
			// fakeRuntime.Status answers nil, as the runtime does when it
			// cannot tell: the replicas are still listed.
			if st := c.Status(); st[0].Apps[0].Version != "v1" || len(st[0].Apps[0].Replicas) != 1 || st[0].Apps[0].URL == "" {
				t.Fatalf("status %+v, want web v1 with its replica", st)
			}
		})
	}
}
