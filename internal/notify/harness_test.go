package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
)

// waitLimit bounds every wait of a test; it is a safety net, not a
// timing assertion.
const waitLimit = 20 * time.Second

// request is one request a test receiver got.
type request struct {
	header http.Header
	body   []byte
}

// notification decodes a generic JSON body.
func (r request) notification(t *testing.T) Notification {
	t.Helper()
	var n Notification
	if err := json.Unmarshal(r.body, &n); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return n
}

// sink is a loopback receiver. status, if set, picks each answer by the
// request's number (1 for the first); nil answers 204. block, if set,
// makes every request wait until it is closed or the client goes.
type sink struct {
	srv    *httptest.Server
	got    chan request
	mu     sync.Mutex
	n      int
	status func(n int, w http.ResponseWriter) int
	block  chan struct{}
}

func newSink(t *testing.T, status func(n int, w http.ResponseWriter) int) *sink {
	s := &sink{got: make(chan request, 1000), status: status}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	s.got <- request{header: r.Header.Clone(), body: b}
	if s.block != nil {
		select {
		case <-s.block:
		case <-r.Context().Done():
			return
		}
	}
	code := http.StatusNoContent
	if s.status != nil {
		code = s.status(n, w)
	}
	w.WriteHeader(code)
	fmt.Fprint(w, "answer\n")
}

// next waits for the sink's next request.
func (s *sink) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-s.got:
		return r
	case <-time.After(waitLimit):
		t.Fatal("no request came")
		return request{}
	}
}

// none checks that no request is waiting to be read.
func (s *sink) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-s.got:
		t.Fatalf("unexpected request %s", r.body)
	default:
	}
}

// fakePipelines holds pipelines in memory (the runner needs a store, a
// repository and a data plane; notify only reads).
type fakePipelines struct {
	mu sync.Mutex
	ps []*pipeline.Pipeline // oldest first
}

func (f *fakePipelines) add(p pipeline.Pipeline) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ps = append(f.ps, &p)
}

func (f *fakePipelines) Get(_ context.Context, id string) (*pipeline.Pipeline, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.ps {
		if p.ID == id {
			c := *p
			return &c, nil
		}
	}
	return nil, pipeline.ErrNotFound
}

func (f *fakePipelines) List(_ context.Context, limit int) ([]*pipeline.Pipeline, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*pipeline.Pipeline
	for _, p := range slices.Backward(f.ps) {
		if limit > 0 && len(out) == limit {
			break
		}
		c := *p
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakePipelines) Cancel(context.Context, string, string) error {
	return fmt.Errorf("cancel: not supported by the test's pipelines")
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// world is a running notifier with its event log, pipelines, clock and
// log.
type world struct {
	n     *Notifier
	rec   *events.Recorder
	pipes *fakePipelines
	clock *clocktesting.FakeClock
	log   *syncBuffer
	stop  func() // cancels Run and waits for it to return
}

// start runs a notifier for cfg; edit, if set, changes its options.
func start(t *testing.T, cfg Config, edit func(*Options)) *world {
	t.Helper()
	w := &world{
		rec: events.New(nil, nil), pipes: &fakePipelines{},
		clock: clocktesting.NewFakeClock(time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)), log: &syncBuffer{},
	}
	o := Options{
		Config: cfg, Events: w.rec, Pipelines: w.pipes, Clock: w.clock,
		Logger: slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&o)
	}
	n, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w.n = n
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(waitLimit):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(w.stop)
	return w
}

// pipelineEnd records a pipeline's end, the way the runner does.
func (w *world) pipelineEnd(p pipeline.Pipeline) {
	w.pipes.add(p)
	w.rec.Record(typeOf(p.Phase == pipeline.Failed), events.Pipeline, p.ID, string(p.Phase), p.Reason)
}

func typeOf(warn bool) string {
	if warn {
		return events.Warning
	}
	return events.Normal
}

// stepUntil steps the fake clock past every retry wait until done
// reports true; bounded by waitLimit.
func (w *world) stepUntil(t *testing.T, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("gave up stepping the clock")
		}
		if w.clock.HasWaiters() {
			w.clock.Step(MaxBackoff)
		}
		time.Sleep(time.Millisecond)
	}
}

// receiverNamed is the notifier's receiver of that name.
func (w *world) receiverNamed(t *testing.T, name string) *receiver {
	t.Helper()
	for _, r := range w.n.receivers {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no receiver %s", name)
	return nil
}
