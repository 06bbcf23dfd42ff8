package events

import (
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestSince(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	r := New(clk, nil)
	a := r.Normal(Environment, "v1", "Creating", "")
	_, wake := r.Since(a, 0)
	b := r.Warning(Rollout, "production/web", "Aborted", "analysis failed")
	select {
	case <-wake:
	default:
		t.Fatal("recording did not wake a reader waiting after the last event")
	}
	got, _ := r.Since(0, 0)
	if len(got) != 2 || got[0].Seq != a || got[1].Seq != b || got[1].Type != Warning || !got[0].Time.Equal(clk.Now()) {
		t.Fatalf("Since(0) = %+v", got)
	}
	if got, _ := r.Since(a, 0); len(got) != 1 || got[0].Reason != "Aborted" {
		t.Fatalf("Since(a) = %+v", got)
	}
	if got, _ := r.Since(0, 1); len(got) != 1 || got[0].Seq != a {
		t.Fatalf("Since(0, 1) = %+v", got)
	}
}

func TestKeepsTheNewest(t *testing.T) {
	r := New(nil, nil)
	for i := range Capacity + 10 {
		r.Normal(Pipeline, fmt.Sprint(i), "Started", "")
	}
	got, _ := r.Since(0, 0)
	if len(got) != Capacity || got[0].Seq != 11 || got[len(got)-1].Seq != Capacity+10 {
		t.Fatalf("kept %d events, first %d last %d", len(got), got[0].Seq, got[len(got)-1].Seq)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("events out of order at %d: %d after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
}

func TestMessageRedactedAndBounded(t *testing.T) {
	r := New(nil, func(s string) string { return "masked " + s[:3] })
	r.Normal(Environment, "v1", "Failed", "secret-value")
	long := New(nil, nil)
	long.Normal(Environment, "v1", "Failed", string(make([]byte, 5000)))
	got, _ := r.Since(0, 0)
	got2, _ := long.Since(0, 0)
	if got[0].Message != "masked sec" || len(got2[0].Message) != maxMessage {
		t.Fatalf("messages %q, %d bytes", got[0].Message, len(got2[0].Message))
	}
	var nilRec *Recorder
	if nilRec.Normal(Environment, "v1", "Ready", "") != 0 {
		t.Fatal("a nil recorder recorded")
	}
}

// After Close no reader waits: the wake channel it has, and every one it
// gets later, is closed; events are still kept.
func TestCloseWakesReaders(t *testing.T) {
	r := New(nil, nil)
	_, waiting := r.Since(0, 0)
	r.Close()
	r.Close() // twice is harmless
	select {
	case <-waiting:
	default:
		t.Fatal("Close did not wake a waiting reader")
	}
	r.Normal(Environment, "v1", "Ready", "")
	got, later := r.Since(0, 0)
	select {
	case <-later:
	default:
		t.Fatal("a reader after Close would wait")
	}
	if len(got) != 1 {
		t.Fatalf("events after Close: %+v", got)
	}
}
