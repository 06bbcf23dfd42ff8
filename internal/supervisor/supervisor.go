package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrNotFound: no workload has that ID.
	ErrNotFound = errors.New("no such workload")
	// ErrClosed: the supervisor was closed.
	ErrClosed = errors.New("supervisor closed")
	// ErrConflict: the Spec conflicts with another workload's.
	ErrConflict = errors.New("conflicting workload")
)

// Supervisor keeps declared workloads running. Its methods are safe for
// concurrent use.
type Supervisor struct {
	log     *slog.Logger
	clock   Clock
	backoff Backoff
	onReady func(addr string, ready bool)
	onTaken func(addr string, taken bool)
	drain   func(ctx context.Context, addr string)
	state   string
	probes  *http.Client

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	bg        sync.WaitGroup // run loops and adopted-process watchers

	persistMu sync.Mutex // orders state file writes

	mu    sync.Mutex
	work  map[string]*workload
	locks map[string]*idLock
}

// workload is one Spec and what runs for it. Its fields are guarded by
// Supervisor.mu; spec never changes (a changed Spec is a new workload).
type workload struct {
	spec Spec
	proc *proc // the current process; nil in BackOff or before the first start
	// portTaken: the readiness probe last found Addr held by another uid
	// (OnPortTaken told); across restarts, until the workload holds it.
	portTaken atomic.Bool

	state      State
	ready      bool
	everReady  bool // ready at least once since the Spec was applied
	started    bool // a process was started or adopted at least once
	restarts   int
	exits      int // exits since the Spec was applied
	crashes    int // restarts in the current crash loop (the backoff position)
	lastExit   string
	lastExitAt time.Time
	nextStart  time.Time
	since      time.Time

	changed  chan struct{} // closed and replaced on every change
	stop     chan struct{} // closed to end the run loop (Remove, StopAll, replace)
	stopping bool
	removing bool          // Remove began: persisted, so a restart finishes it
	run      string        // nonce of the current (or starting) process: RunEnv
	done     chan struct{} // closed when the run loop has ended
}

type idLock struct {
	ch   chan struct{}
	refs int
}

// New starts a supervisor. With Options.StatePath it loads the recorded
// workloads: a process that still runs as recorded (same pid and start
// time) is adopted, any other is started again. New fails on a state file
// it cannot read or parse.
func New(ctx context.Context, o Options) (*Supervisor, error) {
	s := &Supervisor{
		log:     o.Logger,
		clock:   o.Clock,
		backoff: o.Backoff.withDefaults(),
		onReady: o.OnReady,
		onTaken: o.OnPortTaken,
		drain:   o.Drain,
		state:   o.StatePath,
		probes: &http.Client{
			Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		closing: make(chan struct{}),
		work:    map[string]*workload{},
		locks:   map[string]*idLock{},
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Apply declares a workload and starts it. Applying the Spec a workload
// already has changes nothing; a changed Spec under the same ID stops the
// old process (drained first) and starts the new one. Apply returns once
// the process has started (not once it is ready: see WaitReady); an error
// starting it leaves no workload behind.
func (s *Supervisor) Apply(ctx context.Context, sp Spec) (Status, error) {
	if err := Validate(sp); err != nil {
		return Status{}, err
	}
	sp = cloneSpec(sp)
	unlock, err := s.lockID(ctx, sp.ID)
	if err != nil {
		return Status{}, err
	}
	defer unlock()

	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		return Status{}, ErrClosed
	}
	old := s.work[sp.ID]
	if old != nil && specEqual(old.spec, sp) {
		st := old.status()
		s.mu.Unlock()
		return st, nil
	}
	if sp.Addr != "" {
		for id, w := range s.work {
			if id != sp.ID && w.spec.Addr == sp.Addr {
				s.mu.Unlock()
				return Status{}, fmt.Errorf("applying %s: address %s is used by workload %s: %w", sp.ID, sp.Addr, id, ErrConflict)
			}
		}
	}
	s.mu.Unlock()

	if old != nil {
		s.log.Info("replacing workload with a changed spec", "id", sp.ID)
		if err := s.stopWorkload(ctx, old); err != nil {
			return Status{}, fmt.Errorf("replacing %s: %w", sp.ID, err)
		}
		s.mu.Lock()
		delete(s.work, sp.ID)
		s.mu.Unlock()
	}

	w := newWorkload(sp, s.clock.Now())
	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		return Status{}, ErrClosed
	}
	s.work[sp.ID] = w // before the start, so that the recorded state has the process
	s.mu.Unlock()
	p, err := s.start(w)
	if err != nil {
		s.mu.Lock()
		delete(s.work, sp.ID)
		s.mu.Unlock()
		if perr := s.persist(); perr != nil {
			s.log.Error("recording a failed start", "id", sp.ID, "err", perr)
		}
		return Status{}, fmt.Errorf("applying %s: %w", sp.ID, err)
	}
	perr := s.persist()
	s.mu.Lock()
	closed := s.isClosed()
	if !closed {
		s.launch(w, p) // under mu, so that Close cannot be waiting already
	}
	st := w.status()
	s.mu.Unlock()
	if closed { // Close ran while the process started: recorded for the next supervisor
		return Status{}, ErrClosed
	}
	s.log.Info("started workload", "id", sp.ID, "pid", p.pid, "addr", sp.Addr)
	if perr != nil {
		return st, fmt.Errorf("applying %s: %w", sp.ID, perr)
	}
	return st, nil
}

// Remove drains a workload (Options.Drain), stops its process group
// (Spec.StopSignal, Spec.StopGrace, SIGKILL) and forgets it. Removing an
// unknown ID is not an error. When ctx ends, the drain is cut short and
// the process group killed at once.
func (s *Supervisor) Remove(ctx context.Context, id string) error {
	unlock, err := s.lockID(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		return ErrClosed
	}
	w := s.work[id]
	if w != nil {
		w.removing = true
	}
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	// Recorded before anything is stopped: a supervisor killed in the
	// middle finishes the removal at its next start, it never restarts
	// what was being removed.
	if err := s.persist(); err != nil {
		return fmt.Errorf("removing %s: %w", id, err)
	}
	stopErr := s.stopWorkload(ctx, w)
	s.mu.Lock()
	delete(s.work, id)
	s.mu.Unlock()
	perr := s.persist()
	if stopErr != nil {
		return fmt.Errorf("removing %s: %w", id, stopErr)
	}
	if perr != nil {
		return fmt.Errorf("removing %s: %w", id, perr)
	}
	s.log.Info("removed workload", "id", id)
	return nil
}

// StopAll stops and forgets every workload, as Remove does, concurrently.
// It is for an in-process supervisor's shutdown and for tests; the data
// plane's shutdown calls Close instead, leaving everything running.
func (s *Supervisor) StopAll(ctx context.Context) error {
	s.mu.Lock()
	ids := make([]string, 0, len(s.work))
	for id := range s.work {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = s.Remove(ctx, id) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Get returns the status of a workload. After an exit, LogTail holds the
// end of its log.
func (s *Supervisor) Get(id string) (Status, bool) {
	s.mu.Lock()
	w := s.work[id]
	if w == nil {
		s.mu.Unlock()
		return Status{}, false
	}
	st, logPath := w.status(), w.spec.LogPath
	s.mu.Unlock()
	if st.LastExit != "" {
		st.LogTail = logTail(logPath)
	}
	return st, true
}

// List returns the status of every workload of group ("" for all), sorted
// by ID. Workloads that exited and are not ready carry their LogTail.
func (s *Supervisor) List(group string) []Status {
	s.mu.Lock()
	var out []Status
	var logs []string
	for _, w := range s.work {
		if group == "" || w.spec.Group == group {
			out = append(out, w.status())
			logs = append(logs, w.spec.LogPath)
		}
	}
	s.mu.Unlock()
	for i := range out {
		if out[i].LastExit != "" && !out[i].Ready {
			out[i].LogTail = logTail(logs[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Close stops supervising: the run loops, probes and watchers end, the
// processes keep running and the state file stays, for the next
// supervisor to adopt. A goroutine waiting for each child process's exit
// remains until that child exits, so that it is reaped. Close is
// idempotent.
func (s *Supervisor) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closing)
		s.mu.Unlock()
	})
	s.bg.Wait()
}

func (s *Supervisor) isClosed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// lockID serializes Apply and Remove of one ID; different IDs proceed in
// parallel (a drain of one replica must not hold up the start of another).
func (s *Supervisor) lockID(ctx context.Context, id string) (func(), error) {
	s.mu.Lock()
	l := s.locks[id]
	if l == nil {
		l = &idLock{ch: make(chan struct{}, 1)}
		s.locks[id] = l
	}
	l.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.locks, id)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("waiting for another change of %s: %w", id, ctx.Err())
	}
}

func newWorkload(sp Spec, now time.Time) *workload {
	return &workload{
		spec:    sp,
		state:   Starting,
		since:   now,
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// status is w's Status; the caller holds Supervisor.mu.
func (w *workload) status() Status {
	st := Status{
		ID: w.spec.ID, Group: w.spec.Group, Addr: w.spec.Addr,
		State: w.state, Ready: w.ready, Restarts: w.restarts,
		LastExit: w.lastExit, LastExitAt: w.lastExitAt, NextStart: w.nextStart, Since: w.since,
	}
	if w.proc != nil {
		st.PID, st.StartTime = w.proc.pid, w.proc.start
	}
	return st
}

// notify wakes everyone waiting for a change of w; the caller holds
// Supervisor.mu.
func (w *workload) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// setState moves w to state; the caller holds Supervisor.mu.
func (w *workload) setState(state State, now time.Time) {
	if w.state != state {
		w.state, w.since = state, now
	}
}

// GetContext is Get in Client's shape: an in-process supervisor cannot
// fail to answer.
func (s *Supervisor) GetContext(_ context.Context, id string) (Status, bool, error) {
	st, ok := s.Get(id)
	return st, ok, nil
}

// ListContext is List in Client's shape.
func (s *Supervisor) ListContext(_ context.Context, group string) ([]Status, error) {
	return s.List(group), nil
}
