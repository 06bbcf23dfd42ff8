package rollout

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/workload"
)

// crashLooping is a canary replica the runtime restarted three times.
var crashLooping = runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaBackOff, Restarts: 3, LastExit: "exit status 2"}

const crashLoopReason = `canary replica 0 crash-looping: restarted 3 times, last exit "exit status 2"`

// waitLooks steps the clock one check at a time until the controller has
// looked at the canary n more times than before.
func (fx *fixture) waitLooks(t *testing.T, before, n int) {
	t.Helper()
	for i := range n {
		want := before + i + 1
		deadline := time.Now().Add(30 * time.Second)
		for fx.work.looked() < want {
			if _, ok := fx.finished(canaryVersion); ok {
				t.Fatalf("rollout ended while its canary was watched: %+v", fx.ctl.List())
			}
			if time.Now().After(deadline) {
				t.Fatalf("the canary was looked at %d times, want %d", fx.work.looked()-before, want-before)
			}
			time.Sleep(2 * time.Millisecond)
			if !fx.clk.HasWaiters() {
				continue
			}
			// One step per look: the requeue after CanaryCheck.
			fx.clk.Step(checkEvery)
		}
	}
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
			name:    "in a timed pause",
			steps:   "      - setWeight: 20\n      - pause: {duration: 1h}\n",
			reached: func(t *testing.T, fx *fixture) { fx.waitMessage(t, "pause 1h") },
		},
		{
			name:     "during an analysis",
			steps:    "      - setWeight: 20\n      - analysis: {templates: [{templateName: t}]}\n",
			outcomes: []Outcome{{Phase: blockUntilCancelled}},
			reached:  func(t *testing.T, fx *fixture) { fx.waitMessage(t, "analysis ") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.outcomes)
			fx.start(t, parseSpec(t, tt.steps))
			tt.reached(t, fx)
			fx.work.setReplicas(runtime.ReplicaStatus{Index: 1, State: runtime.ReplicaRunning, Ready: true}, crashLooping)
			st := fx.wait(t)
			fx.assertAborted(t, st, crashLoopReason)
			if got := fx.router.seen(); len(got) != 1 || got[0] != 20 {
				t.Errorf("weights = %v, want [20]: nothing after the crash loop", got)
			}
		})
	}
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
				fx.work.setReplicas(runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaStarting, Since: fx.clk.Now()})
			},
			want: reason + ": replica 0 Starting and not ready for",
		},
		{
			// Restarts below the crash-loop threshold, Since reset by
			// every change of state: the unready time still adds up.
			name: "replica flapping between states",
			setup: func(fx *fixture) {
				states := []runtime.ReplicaState{runtime.ReplicaStarting, runtime.ReplicaRunning, runtime.ReplicaBackOff}
				fx.work.status = func(version string, looks int) []runtime.ReplicaStatus {
					if version != canaryVersion {
						return nil
					}
					return []runtime.ReplicaStatus{{Index: 0, State: states[looks%3], Restarts: 1, Since: fx.clk.Now()}}
				}
			},
			want: reason + ": replica 0 ",
		},
		{
			name: "the canary's start does not return",
			setup: func(fx *fixture) {
				fx.work.setStartHook(func(ctx context.Context, art build.Artifact) error {
					if art.Version != canaryVersion {
						return nil
					}
					<-ctx.Done()
					return ctx.Err()
				})
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
		replicas func(fx *fixture) []runtime.ReplicaStatus
	}{
		{"restarted twice, ready", func(*fixture) []runtime.ReplicaStatus {
			return []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaRunning, Ready: true, Restarts: 2, LastExit: "signal: killed"}}
		}},
		{"unready within the deadline", func(fx *fixture) []runtime.ReplicaStatus {
			return []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaRunning, Since: fx.clk.Now()}}
		}},
		{"runtime knows nothing", func(*fixture) []runtime.ReplicaStatus { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
			fx.waitPaused(t)
			before := fx.work.setReplicas(tt.replicas(fx)...)
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
		replica func(fx *fixture) runtime.ReplicaStatus
		want    string
	}{
		{"crash loop after the restart", func(*fixture) runtime.ReplicaStatus { return crashLooping }, crashLoopReason},
		{"unready since before the restart", func(fx *fixture) runtime.ReplicaStatus {
			return runtime.ReplicaStatus{Index: 0, State: runtime.ReplicaRunning, Since: fx.clk.Now().Add(-time.Hour)}
		}, "canary not ready within progressDeadlineSeconds (600s): replica 0 Running and not ready for 1h0m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			spec := parseSpec(t, "      - setWeight: 20\n      - pause: {}\n")
			fx.start(t, spec)
			fx.waitPaused(t)
			fx.restart(t, nil)
			fx.ctl.SetDesired(desired(t, spec))
			fx.waitPaused(t)
			fx.work.setReplicas(tt.replica(fx))
			fx.assertAborted(t, fx.wait(t), tt.want)
			if cp := fx.store.get(canaryVersion); !cp.Done() || cp.Phase != Degraded || !strings.Contains(cp.Message, tt.want) {
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

// A canary start that fails for a reason that is not the version's fault
// (its database could not be provided, say) is tried again with backoff, a
// few times, before the rollout is aborted.
func TestCanaryStartRetried(t *testing.T) {
	tests := []struct {
		name  string
		fails int
		want  string // "" for promoted
	}{
		{name: "recovers", fails: 2},
		{name: "gives up", fails: 1000, want: "canary " + canaryVersion + " did not start: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			var starts atomic.Int32
			fx.work.setStartHook(func(_ context.Context, art build.Artifact) error {
				if art.Version == canaryVersion && int(starts.Add(1)) <= tt.fails {
					return fmt.Errorf("%w: database not ready", workload.ErrRetry)
				}
				return nil
			})
			fx.start(t, parseSpec(t, "      - setWeight: 20\n"))
			st := fx.wait(t)
			if tt.want == "" {
				fx.assertPromoted(t, st)
				return
			}
			fx.assertAborted(t, st, tt.want)
			if !strings.Contains(st.Message, "(5 attempts)") || starts.Load() != canaryStartAttempts {
				t.Errorf("message %q after %d starts, want %d attempts", st.Message, starts.Load(), canaryStartAttempts)
			}
		})
	}
}
