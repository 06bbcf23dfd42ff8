// Package events records what the controllers did, in the order they did
// it, as Kubernetes events do: an environment began to be created or was
// ready, a rollout was aborted, a pipeline was superseded. Each event has a
// sequence number, so that a reader (the API, the dashboard, a test) can
// tell what happened before what without comparing clocks, and ask for
// what came after the last one it saw. Events are kept in memory, the
// newest Capacity of them: they explain recent work and are not a history
// (pipelines and rollouts keep theirs in the store).
package events

import (
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Types of event, as Kubernetes names them.
const (
	Normal  = "Normal"
	Warning = "Warning"
)

// Kinds of object an event is about.
const (
	Environment = "Environment"
	Rollout     = "Rollout"
	Pipeline    = "Pipeline"
)

// Event is one thing a controller did or saw.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// Kind and Name say what the event is about: an Environment (its
	// name), a Rollout (env/app) or a Pipeline (its id).
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Reason is a short CamelCase word a program can match ("Creating",
	// "Ready", "Aborted"); Message is for people.
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Capacity is how many events a Recorder keeps.
const Capacity = 2000

// maxMessage bounds an event's message, in bytes.
const maxMessage = 1024

// Recorder keeps the newest events. The zero value is not usable; a nil
// *Recorder records nothing, so controllers need no check.
type Recorder struct {
	clock  clock.PassiveClock
	redact func(string) string

	mu   sync.Mutex
	ring []Event // ring[(seq-1) % Capacity] is event seq
	next uint64  // the next event's seq; 1 for the first
	wake chan struct{}
	// closed: every wake channel handed out is closed (see Close).
	closed bool
}

// New returns a recorder. clk nil: the real clock. redact, if set, masks
// secrets in messages before they are kept.
func New(clk clock.PassiveClock, redact func(string) string) *Recorder {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Recorder{clock: clk, redact: redact, next: 1, wake: make(chan struct{})}
}

// Record keeps an event and returns its sequence number.
func (r *Recorder) Record(typ, kind, name, reason, message string) uint64 {
	if r == nil {
		return 0
	}
	if r.redact != nil {
		message = r.redact(message)
	}
	if len(message) > maxMessage {
		message = message[:maxMessage]
	}
	message = strings.ToValidUTF8(message, "?")
	r.mu.Lock()
	defer r.mu.Unlock()
	e := Event{Seq: r.next, Time: r.clock.Now().UTC(), Type: typ, Kind: kind, Name: name, Reason: reason, Message: message}
	if len(r.ring) < Capacity {
		r.ring = append(r.ring, e)
	} else {
		r.ring[(e.Seq-1)%Capacity] = e
	}
	r.next++
	if !r.closed { // once closed, r.wake stays closed
		close(r.wake)
		r.wake = make(chan struct{})
	}
	return e.Seq
}

// Close wakes every reader waiting for the next event, now and from now
// on, as if an event had come: a server shutting down ends its long polls
// with it. Events are still recorded after Close.
func (r *Recorder) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.wake)
	}
}

// Normal records a Normal event.
func (r *Recorder) Normal(kind, name, reason, message string) uint64 {
	return r.Record(Normal, kind, name, reason, message)
}

// Warning records a Warning event.
func (r *Recorder) Warning(kind, name, reason, message string) uint64 {
	return r.Record(Warning, kind, name, reason, message)
}

// Since returns the kept events after seq, oldest first, at most limit of
// them (limit <= 0: all kept), and a channel closed when the next event is
// recorded.
func (r *Recorder) Since(seq uint64, limit int) ([]Event, <-chan struct{}) {
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	first := uint64(1)
	if r.next > Capacity {
		first = r.next - Capacity
	}
	from := max(seq+1, first)
	var out []Event
	for s := from; s < r.next; s++ {
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, r.ring[(s-1)%Capacity])
	}
	return out, r.wake
}
