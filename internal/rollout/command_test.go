package rollout

import (
	"errors"
	"strings"
	"testing"
)

// The commands write their request into the stored checkpoint and enqueue
// the app: with no worker running, the request is in the store and the key
// in the queue; once the controller runs, the next pass acts on it.
func TestCommandsWriteStatusAndEnqueue(t *testing.T) {
	type stored struct {
		kind  string
		phase string
	}
	tests := []struct {
		name    string
		pause   stored // what the checkpoint is paused on
		command func(c *Controller) error
		wantErr error
		assert  func(t *testing.T, cp Checkpoint)
		// after, if set, checks what the running controller made of it.
		after func(t *testing.T, fx *fixture)
	}{
		{
			name: "promote a pause", pause: stored{pauseIndefinite, Paused},
			command: func(c *Controller) error { return c.Promote(env, app) },
			assert: func(t *testing.T, cp Checkpoint) {
				if cp.PromoteAt != 2 {
					t.Errorf("PromoteAt = %d, want 2 (step 1)", cp.PromoteAt)
				}
			},
			after: func(t *testing.T, fx *fixture) { fx.assertPromoted(t, fx.wait(t)) },
		},
		{
			name: "promote full", pause: stored{pauseIndefinite, Paused},
			command: func(c *Controller) error { return c.PromoteFull(env, app) },
			assert: func(t *testing.T, cp Checkpoint) {
				if !cp.Full {
					t.Error("Full not set")
				}
			},
			after: func(t *testing.T, fx *fixture) { fx.assertPromoted(t, fx.wait(t)) },
		},
		{
			name: "abort", pause: stored{pauseIndefinite, Paused},
			command: func(c *Controller) error { return c.Abort(env, app, "by hand") },
			assert: func(t *testing.T, cp Checkpoint) {
				if cp.Aborting != "aborted by request: by hand" || cp.Phase != Degraded {
					t.Errorf("Aborting %q, phase %s; want the request saved", cp.Aborting, cp.Phase)
				}
			},
			after: func(t *testing.T, fx *fixture) { fx.assertAborted(t, fx.wait(t), "aborted by request: by hand") },
		},
		{
			name: "retry an inconclusive pause", pause: stored{pauseInconclusive, Paused},
			command: func(c *Controller) error { return c.Retry(env, app) },
			assert: func(t *testing.T, cp Checkpoint) {
				if cp.RetryAt != 2 {
					t.Errorf("RetryAt = %d, want 2", cp.RetryAt)
				}
			},
		},
		{
			name: "retry refused outside an inconclusive pause", pause: stored{pauseIndefinite, Paused},
			command: func(c *Controller) error { return c.Retry(env, app) }, wantErr: ErrNotPaused,
		},
		{
			name: "promote refused outside a pause", pause: stored{"", Progressing},
			command: func(c *Controller) error { return c.Promote(env, app) }, wantErr: ErrNotPaused,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.routeCanary(t, 20)
			fx.checkpoint(t, Checkpoint{})
			cp := fx.store.get(canaryVersion)
			cp.Step, cp.Weight, cp.PauseKind, cp.Phase = 1, 20, tt.pause.kind, tt.pause.phase
			if err := fx.store.SaveRollout(t.Context(), cp); err != nil {
				t.Fatal(err)
			}
			err := tt.command(fx.ctl)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			got := fx.store.get(canaryVersion)
			if tt.wantErr != nil {
				if got.PromoteAt != 0 || got.RetryAt != 0 || got.Full || got.Aborting != "" {
					t.Errorf("a refused command changed the checkpoint: %+v", got)
				}
				return
			}
			if n := fx.ctl.queue.Len(); n != 1 {
				t.Errorf("queue length %d, want the app's key", n)
			}
			if s, ok := fx.ctl.Active(env, app); !ok || s.Phase != got.Phase {
				t.Errorf("Active = %+v, %v; want the saved status", s, ok)
			}
			tt.assert(t, got)
			if tt.after != nil {
				fx.start(t, parseSpec(t, "      - setWeight: 20\n      - pause: {}\n"))
				tt.after(t, fx)
			}
		})
	}
}

// A pass that acted while a command was written keeps the command: a pass
// never overwrites what it did not see.
func TestMergeCommands(t *testing.T) {
	loaded := Checkpoint{Status: Status{Step: 1}}
	stored := loaded
	stored.PromoteAt, stored.Full, stored.Aborting = 2, true, "aborted by request: x"
	mine := loaded
	mine.Step, mine.Message = 2, "step 2/3: weight 50%"
	mergeCommands(&mine, loaded, stored)
	if mine.PromoteAt != 2 || !mine.Full || !strings.Contains(mine.Aborting, "x") || mine.Step != 2 {
		t.Fatalf("merged %+v", mine)
	}
	// A request the pass consumed stays consumed.
	loaded.PromoteAt = 2
	stored = loaded
	mine = loaded
	mine.PromoteAt = 0
	mergeCommands(&mine, loaded, stored)
	if mine.PromoteAt != 0 {
		t.Fatalf("consumed promote came back: %+v", mine)
	}
}
