package supervisor

import (
	"syscall"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration // delays before restarts 1, 2, 3, ...
	}{
		{name: "defaults", want: []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
			16 * time.Second, 32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second,
			5 * time.Minute, 5 * time.Minute}},
		{name: "custom", b: Backoff{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond},
			want: []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for n, want := range tt.want {
				if got := tt.b.Delay(n); got != want {
					t.Errorf("Delay(%d) = %v, want %v", n, got, want)
				}
			}
			if got := tt.b.Delay(1 << 30); got != tt.b.withDefaults().Max {
				t.Errorf("Delay(huge) = %v, want the cap", got)
			}
		})
	}
}

// TestCrashLoopBackOff runs a process that exits at once every time: the
// first restart is immediate, then the workload waits in BackOff 1s, 2s,
// 4s, capped, on a fake clock.
func TestCrashLoopBackOff(t *testing.T) {
	clock := newFakeClock()
	s := newSupervisor(t, Options{Clock: clock, Backoff: Backoff{Max: 4 * time.Second}})
	sp := helperSpec(t, "env/crash", "EXIT_NOW=1", "EXIT_CODE=1")
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		restarts := i + 1
		st := await(t, s, sp.ID, "back-off", func(st Status) bool { return st.State == BackOff && st.Restarts == restarts })
		if got := st.NextStart.Sub(clock.Now()); got != want {
			t.Fatalf("restart %d: NextStart in %v, want %v", restarts+1, got, want)
		}
		if st.LastExit != "exit status 1" || st.PID != 0 || st.Ready {
			t.Fatalf("status in back-off = %+v", st)
		}
		clock.Advance(want)
	}
	st, _ := s.Get(sp.ID)
	if st.LogTail == "" {
		t.Errorf("Get after an exit has no log tail: %+v", st)
	}
}

// TestBackoffReset: a process that ran Reset (10m) restarts at once
// again, however often it crashed before.
func TestBackoffReset(t *testing.T) {
	clock := newFakeClock()
	s := newSupervisor(t, Options{Clock: clock})
	sp := servingSpec(t, "env/reset")
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	kill := func(restarts int) {
		t.Helper()
		st := await(t, s, sp.ID, "ready", func(st Status) bool { return st.Ready && st.Restarts == restarts })
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	kill(0) // first restart: immediate, no clock movement needed
	kill(1)
	st := await(t, s, sp.ID, "back-off", func(st Status) bool { return st.State == BackOff })
	if got := st.NextStart.Sub(clock.Now()); got != time.Second || st.LastExit != "signal: killed" {
		t.Fatalf("second restart: in %v after %q, want 1s after signal: killed", got, st.LastExit)
	}
	clock.Advance(time.Second)
	await(t, s, sp.ID, "restart after the back-off", func(st Status) bool { return st.Ready && st.Restarts == 2 })
	clock.Advance(DefaultBackoffReset) // the restarted process runs 10m
	kill(2)
	// Only an immediate restart gets here: the fake clock stands still.
	await(t, s, sp.ID, "immediate restart after a long run", func(st Status) bool { return st.Ready && st.Restarts == 3 })
}
