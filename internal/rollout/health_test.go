package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// crashLooping is a canary replica the runtime restarted three times.
var crashLooping = runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaBackOff, Restarts: 3, LastExit: "exit status 2"}

const crashLoopReason = `canary replica 0 crash-looping: restarted 3 times, last exit "exit status 2"`

// waitLooks waits until the rollout has looked at the canary n more times
// than before.
func (fx *fixture) waitLooks(t *testing.T, before, n int) {
	t.Helper()
	for range 3000 {
		if fx.target.looked() >= before+n {
			return
		}
		select {
		case <-fx.done:
			t.Fatalf("rollout ended while its canary was watched: %+v", fx.ctl.List())
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("the canary was looked at %d times, want %d", fx.target.looked()-before, n)
}

// A crash-looping canary is aborted whatever the rollout is doing: in an
// indefinite or a timed pause, during an analysis.
func TestCrashLoopingCanaryIsAborted(t *testing.T) {
	tests := []struct {
		name     string
		steps    string
		outcomes []Outcome
		// reached waits until the rollout is where the canary crashes.
		reached func(t *testing.T, fx *fixture)
	}{
		{
			name:    "waiting for promotion",
			steps:   "      - setWeight: 20\n      - pause: {}\n      - setWeight: 100\n",
			reached: func(t *testing.T, fx *fixture) { fx.waitPaused(t) },
		},
		{
			name:  "in a timed pause",
			steps: "      - setWeight: 20\n      - pause: {duration: 1h}\n",
			reached: func(t *testing.T, fx *fixture) {
				fx.waitMessage(t, "pause 1h")
			},
		},
		{
			name:     "during an analysis",
			steps:    "      - setWeight: 20\n      - analysis: {templates: [{templateName: t}]}\n",
			outcomes: []Outcome{{Phase: blockUntilCancelled}},
			reached: func(t *testing.T, fx *fixture) {
				fx.waitMessage(t, "analysis ")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.outcomes)
			fx.start(t, parseSpec(t, tt.steps))
			tt.reached(t, fx)
			fx.target.setReplicas(runtime.ReplicaStatus{Index: 1, State: runtime.ReplicaRunning, Ready: true}, crashLooping)
			st := fx.wait(t)
			fx.assertAborted(t, st, crashLoopReason)
			if got := fx.router.seen(); len(got) != 1 || got[0] != 20 {
				t.Errorf("weights = %v, want [20]: nothing after the crash loop", got)
			}
		})
	}
}

// waitMessage waits until the running rollout's message contains s.
func (fx *fixture) waitMessage(t *testing.T, s string) {
	t.Helper()
	for range 3000 {
		if st, ok := fx.ctl.Active(env, app); ok && strings.Contains(st.Message, s) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("rollout never said %q: %+v", s, fx.ctl.List())
}

func TestNeverReadyCanaryIsAborted(t *testing.T) {
	const reason = "canary not ready within progressDeadlineSeconds (1s)"
	tests := []struct {
		name  string
		setup func(fx *fixture)
		want  string
	}{
		{
			name: "replica started but never ready",
			setup: func(fx *fixture) {
				fx.target.setReplicas(runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaStarting, Since: time.Now()})
			},
			want: reason + ": replica 0 Starting and not ready for",
		},
		{
			// Restarts below the crash-loop threshold, Since reset by
			// every change of state: the unready time still adds up.
			name: "replica flapping between states",
			setup: func(fx *fixture) {
				states := []runtime.ReplicaState{runtime.ReplicaStarting, runtime.ReplicaRunning, runtime.ReplicaBackOff}
				fx.target.status = func(looks int) []runtime.ReplicaStatus {
					return []runtime.ReplicaStatus{{Index: 0, State: states[looks%3], Restarts: 1, Since: time.Now()}}
				}
			},
			want: reason + ": replica 0 ",
		},
		{
			name: "StartCanary does not return",
			setup: func(fx *fixture) {
				fx.target.startHook = func(ctx context.Context) error {
					<-ctx.Done()
					return ctx.Err()
				}
			},
			want: reason,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			tt.setup(fx)
			spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
			spec.ProgressDeadlineSeconds = 1
			fx.start(t, spec)
			st := fx.wait(t)
			fx.assertAborted(t, st, tt.want)
		})
	}
}

// A canary that restarted less than the threshold and is ready, or that is
// unready for less than the deadline, goes on.
func TestHealthyCanaryIsNotAborted(t *testing.T) {
	tests := []struct {
		name     string
		replicas []runtime.ReplicaStatus
	}{
		{"restarted twice, ready", []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaRunning, Ready: true, Restarts: 2, LastExit: "signal: killed"}}},
		{"unready within the deadline", []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaRunning, Since: time.Now()}}},
		{"runtime knows nothing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
			fx.waitPaused(t)
			before := fx.target.setReplicas(tt.replicas...)
			fx.waitLooks(t, before, 20)
			if err := fx.ctl.Promote(env, app); err != nil {
				t.Fatalf("Promote: %v (status %+v)", err, fx.ctl.List())
			}
			fx.assertPromoted(t, fx.wait(t))
		})
	}
}

// A control plane restart keeps the watch going, and the data plane's
// memory of how long a replica has been unready counts.
func TestResumedRolloutWatchesItsCanary(t *testing.T) {
	tests := []struct {
		name    string
		replica runtime.ReplicaStatus
		want    string
	}{
		{"crash loop after the restart", crashLooping, crashLoopReason},
		{"unready since before the restart", runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaRunning, Since: time.Now().Add(-time.Hour)},
			"canary not ready within progressDeadlineSeconds (600s): replica 0 Running and not ready for 1h0m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			cps := &memCheckpoints{}
			fx.ctl.Persist(t.Context(), cps)
			req := fx.request(t, "      - setWeight: 20\n      - pause: {}\n")
			stop := fx.startWith(t, req)
			fx.waitPaused(t)
			fx.restart(t, cps, stop, nil)
			fx.startWith(t, req)
			fx.waitPaused(t)
			fx.target.setReplicas(tt.replica)
			fx.assertAborted(t, fx.wait(t), tt.want)
			if cp := cps.get(canaryVersion); !cp.Done() || cp.Phase != Degraded || !strings.Contains(cp.Message, tt.want) {
				t.Errorf("checkpoint: done %v phase %s message %q; want it ended Degraded with the reason", cp.Done(), cp.Phase, cp.Message)
			}
		})
	}
}

func TestCanaryWatchJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const deadline = 10 * time.Second
	type look struct {
		at       time.Duration // after t0
		replicas []runtime.ReplicaStatus
		want     string // "" for no abort; else a prefix
	}
	ready := runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaRunning, Ready: true}
	unready := func(i int, state runtime.ReplicaState, since time.Duration) runtime.ReplicaStatus {
		return runtime.ReplicaStatus{Index: i, State: state, Since: t0.Add(since)}
	}
	tests := []struct {
		name  string
		looks []look
	}{
		{"ready", []look{{0, []runtime.ReplicaStatus{ready}, ""}, {time.Hour, []runtime.ReplicaStatus{ready}, ""}}},
		{"two restarts", []look{{0, []runtime.ReplicaStatus{{Index: 0, Restarts: 2, Ready: true}}, ""}}},
		{"three restarts, even ready", []look{{0, []runtime.ReplicaStatus{ready, {Index: 1, Restarts: 3, Ready: true, LastExit: "liveness probe failed"}},
			`canary replica 1 crash-looping: restarted 3 times, last exit "liveness probe failed"`}}},
		{"unready at the deadline", []look{{deadline, []runtime.ReplicaStatus{unready(0, runtime.ReplicaStarting, 0)}, ""}}},
		{"unready past the deadline by Since", []look{{deadline + time.Second, []runtime.ReplicaStatus{unready(0, runtime.ReplicaStarting, 0)},
			"canary not ready within progressDeadlineSeconds (10s): replica 0 Starting and not ready for 11s"}}},
		{"Since moving with the state, unready all along", []look{
			{0, []runtime.ReplicaStatus{unready(0, runtime.ReplicaStarting, 0)}, ""},
			{6 * time.Second, []runtime.ReplicaStatus{unready(0, runtime.ReplicaBackOff, 5*time.Second)}, ""},
			{11 * time.Second, []runtime.ReplicaStatus{unready(0, runtime.ReplicaStarting, 10*time.Second)}, "canary not ready within progressDeadlineSeconds (10s): replica 0 Starting"},
		}},
		{"ready in between resets", []look{
			{0, []runtime.ReplicaStatus{unready(0, runtime.ReplicaStarting, 0)}, ""},
			{6 * time.Second, []runtime.ReplicaStatus{ready}, ""},
			{12 * time.Second, []runtime.ReplicaStatus{unready(0, runtime.ReplicaRunning, 11*time.Second)}, ""},
		}},
		{"no Since: counted from the first look", []look{
			{time.Hour, []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaStarting}}, ""},
			{time.Hour + deadline, []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaStarting}}, ""},
			{time.Hour + deadline + time.Second, []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaStarting}}, "canary not ready"},
		}},
		{"stopping is not judged", []look{{time.Hour, []runtime.ReplicaStatus{unready(0, runtime.ReplicaStopping, 0)}, ""}}},
		{"a replica gone is forgotten", []look{
			{0, []runtime.ReplicaStatus{ready, {Index: 1, State: runtime.ReplicaStarting}}, ""},
			{deadline, nil, ""},
			{2 * deadline, []runtime.ReplicaStatus{ready, {Index: 1, State: runtime.ReplicaStarting}}, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := canaryWatch{deadline: deadline, notReady: map[int]time.Time{}, restarts: map[int]int{}}
			for i, l := range tt.looks {
				got := w.judge(l.replicas, t0.Add(l.at))
				if l.want == "" && got != "" || !strings.HasPrefix(got, l.want) {
					t.Fatalf("look %d: judge = %q, want %q", i, got, l.want)
				}
			}
		})
	}
}
