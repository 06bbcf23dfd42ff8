package dashboard

import (
	"context"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/rollout"
)

// Bounds on the traffic history kept in memory.
const (
	maxSeries = 64  // rollouts (env/app) remembered
	maxPoints = 240 // changes remembered per rollout
)

// point is a rollout's traffic split from a time on.
type point struct {
	At      time.Time
	Weight  int // percent to the canary
	Step    int
	Phase   string
	Version string // the canary's
}

// series is one rollout's history.
type series struct {
	points []point
	seen   time.Time // last sampled
}

// history keeps each rollout's traffic split over time, sampled from the
// rollouts' status whenever a page is rendered or Run wakes. The status
// has no history of its own, so the chart starts when the dashboard first
// saw the rollout.
type history struct {
	mu sync.Mutex
	m  map[string]*series
}

func newHistory() *history { return &history{m: map[string]*series{}} }

// sample records each status whose split changed since its last point.
func (h *history) sample(sts []rollout.Status, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range sts {
		k := st.Env + "/" + st.App
		s := h.m[k]
		if s == nil {
			h.evictLocked()
			s = &series{}
			h.m[k] = s
		}
		s.seen = now
		p := point{At: now, Weight: st.Weight, Step: st.Step, Phase: st.Phase, Version: st.CanaryVersion}
		if n := len(s.points); n > 0 {
			last := s.points[n-1]
			if last.Weight == p.Weight && last.Step == p.Step && last.Phase == p.Phase && last.Version == p.Version {
				continue
			}
		}
		if len(s.points) == maxPoints {
			s.points = append(s.points[:0], s.points[1:]...)
		}
		s.points = append(s.points, p)
	}
}

// evictLocked makes room for a new series by forgetting the one seen
// longest ago.
func (h *history) evictLocked() {
	if len(h.m) < maxSeries {
		return
	}
	oldest := ""
	for k, s := range h.m {
		if oldest == "" || s.seen.Before(h.m[oldest].seen) {
			oldest = k
		}
	}
	delete(h.m, oldest)
}

// get returns a copy of env/app's points and when it was last sampled.
func (h *history) get(env, app string) ([]point, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.m[env+"/"+app]
	if s == nil {
		return nil, time.Time{}
	}
	return append([]point(nil), s.points...), s.seen
}

// sampleInterval is how often Run samples when no event wakes it.
const sampleInterval = 2 * time.Second

// Run samples the rollouts' traffic split until ctx is done, at every
// event and every sampleInterval, so that the chart has the history also
// of the time nobody looked. Without Run the history is sampled only
// when pages are rendered.
func (d *Dashboard) Run(ctx context.Context) {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	var seq uint64
	for {
		var wake <-chan struct{}
		if d.o.Events != nil {
			var evs []eventRef
			evs, wake = d.eventsAfter(seq)
			if n := len(evs); n > 0 {
				seq = evs[n-1].seq
			} else if isClosed(wake) {
				// The log was closed (the server stops): its channel no
				// longer waits; the ticker alone paces the loop.
				wake = nil
			}
		}
		d.history.sample(d.o.Rollouts.List(), d.o.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}

type eventRef struct{ seq uint64 }

func (d *Dashboard) eventsAfter(seq uint64) ([]eventRef, <-chan struct{}) {
	evs, wake := d.o.Events.Since(seq, 100)
	out := make([]eventRef, len(evs))
	for i, e := range evs {
		out[i] = eventRef{e.Seq}
	}
	return out, wake
}

// isClosed reports whether ch is closed (a nil ch never is).
func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
