package reporter

import (
	"context"
	"sync"
	"testing"
	"time"
)

// memStore is an in-memory Store that tells when it was read.
type memStore struct {
	mu      sync.Mutex
	apps    map[string][]string
	tokens  map[string]string
	reports map[string]map[string]Report
	loaded  chan struct{} // receives after every LoadExpectation
}

func newMemStore() *memStore {
	return &memStore{
		apps:    map[string][]string{},
		tokens:  map[string]string{},
		reports: map[string]map[string]Report{},
		loaded:  make(chan struct{}, 100),
	}
}

func (m *memStore) SaveExpectation(_ context.Context, workflow string, apps []string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apps[workflow] = append([]string(nil), apps...)
	return nil
}

func (m *memStore) ExpectationToken(_ context.Context, workflow, ifNone string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, found := m.apps[workflow]; !found {
		return "", false, nil
	}
	if m.tokens[workflow] == "" {
		m.tokens[workflow] = ifNone
	}
	return m.tokens[workflow], true, nil
}

func (m *memStore) SaveReport(_ context.Context, workflow string, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reports[workflow] == nil {
		m.reports[workflow] = map[string]Report{}
	}
	m.reports[workflow][r.App] = r
	return nil
}

func (m *memStore) LoadExpectation(_ context.Context, workflow string) ([]string, time.Time, []Report, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer func() { m.loaded <- struct{}{} }()
	apps, found := m.apps[workflow]
	var reports []Report
	for _, r := range m.reports[workflow] {
		reports = append(reports, r)
	}
	return apps, time.Time{}, reports, found, nil
}

// TestWaitWokenByChange checks that Submit and Update wake a blocked waiter
// themselves: the safety re-check is pushed out of reach, so a waiter that
// relied on it would hang and fail the test by its deadline.
func TestWaitWokenByChange(t *testing.T) {
	tests := []struct {
		name   string
		before func(ctx context.Context, r *Reporter) error
		wake   []func(ctx context.Context, r *Reporter) error // each applied once the waiter blocked
		want   Phase
	}{
		{
			name:   "update",
			before: func(ctx context.Context, r *Reporter) error { return r.Submit(ctx, "wf", []string{"a", "b"}) },
			wake: []func(ctx context.Context, r *Reporter) error{
				func(ctx context.Context, r *Reporter) error { return r.Update(ctx, "wf", "a", true, "") },
				func(ctx context.Context, r *Reporter) error { return r.Update(ctx, "wf", "b", true, "") },
			},
			want: PhaseSucceeded,
		},
		{
			name:   "failure",
			before: func(ctx context.Context, r *Reporter) error { return r.Submit(ctx, "wf", []string{"a", "b"}) },
			wake: []func(ctx context.Context, r *Reporter) error{
				func(ctx context.Context, r *Reporter) error { return r.Update(ctx, "wf", "b", false, "boom") },
			},
			want: PhaseFailed,
		},
		{
			name:   "submit",
			before: func(ctx context.Context, r *Reporter) error { return r.Update(ctx, "wf", "a", true, "") },
			wake: []func(ctx context.Context, r *Reporter) error{
				func(ctx context.Context, r *Reporter) error { return r.Submit(ctx, "wf", []string{"a"}) },
			},
			want: PhaseSucceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			r := New(store, nil)
			r.recheck = 24 * time.Hour
			ctx := t.Context()
			if err := tt.before(ctx, r); err != nil {
				t.Fatal(err)
			}
			go func() {
				for _, wake := range tt.wake {
					// The waiter takes the change channel before it
					// reads, so a change after a read always wakes it.
					<-store.loaded
					if err := wake(ctx, r); err != nil {
						t.Errorf("wake: %v", err)
					}
				}
			}()
			exp, err := r.Wait(ctx, "wf", 0)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if exp.Phase != tt.want {
				t.Errorf("Wait phase = %s (%s), want %s", exp.Phase, exp.Reason, tt.want)
			}
		})
	}
}
