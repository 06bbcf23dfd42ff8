package supervisor

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// launch starts w's run loop; p is its running process (started by Apply
// or adopted), nil to start one now. The caller holds Supervisor.mu (or
// is New) and has seen the supervisor open.
func (s *Supervisor) launch(w *workload, p *proc) {
	s.bg.Go(func() { s.run(w, p) })
}

// run keeps w running until it is stopped or the supervisor closes. Each
// pass of the loop is one process's life: start, watch until it exits,
// wait out the backoff.
func (s *Supervisor) run(w *workload, p *proc) {
	defer close(w.done)
	for {
		if p == nil {
			var err error
			if p, err = s.start(w); err != nil {
				s.log.Error("restarting workload", "id", w.spec.ID, "err", err)
				s.recordExit(w, nil, err.Error())
				if !s.wait(w) {
					return
				}
				continue
			}
			s.log.Info("restarted workload", "id", w.spec.ID, "pid", p.pid)
			if err := s.persist(); err != nil {
				s.log.Error("recording a restarted process", "id", w.spec.ID, "err", err)
			}
		}
		if !s.watch(w, p) {
			return
		}
		if !s.wait(w) {
			return
		}
		p = nil
	}
}

// start starts a process for w and makes it w's current one; a restart is
// counted when w ran before. The caller records it (persist).
func (s *Supervisor) start(w *workload) (*proc, error) {
	// The run's nonce is recorded before the process starts: a supervisor
	// killed before it records the pid must find this process again, not
	// start a twin of it.
	run := newRun()
	s.mu.Lock()
	w.run = run
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		return nil, err
	}
	p, err := startProc(w.spec, run, s.clock.Now())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if w.started {
		w.restarts++
	}
	w.started = true
	s.adopted(w, p)
	s.mu.Unlock()
	if w.spec.Readiness == nil {
		s.setReady(w, p, true)
	}
	return p, nil
}

// adopted makes p w's current process; the caller holds Supervisor.mu.
func (s *Supervisor) adopted(w *workload, p *proc) {
	w.proc = p
	w.ready = false
	w.nextStart = time.Time{}
	w.setState(Starting, s.clock.Now())
	w.notify()
}

// watch probes p until it exits (true) or w is stopped or the supervisor
// closes (false, p left running).
func (s *Supervisor) watch(w *workload, p *proc) bool {
	ctx, cancel := context.WithCancel(context.Background())
	var probes sync.WaitGroup
	s.startProbes(ctx, &probes, w, p)
	var exited bool
	select {
	case <-p.exited:
		exited = true
	case <-w.stop:
	case <-s.closing:
	}
	cancel()
	probes.Wait() // no readiness change of p after this
	if !exited {
		return false
	}
	why := p.exitStatus()
	if p.livenessFailed.Load() {
		why = "liveness probe failed"
	}
	s.log.Warn("workload exited", "id", w.spec.ID, "pid", p.pid, "exit", why)
	s.recordExit(w, p, why)
	return true
}

// recordExit records that w's process p (nil: a start that failed) ended.
func (s *Supervisor) recordExit(w *workload, p *proc, why string) {
	now := s.clock.Now()
	s.mu.Lock()
	wasReady := w.ready
	w.proc, w.ready = nil, false
	w.exits++
	w.lastExit, w.lastExitAt = why, now
	if p != nil && now.Sub(p.startedAt) >= s.backoff.Reset {
		w.crashes = 0
	}
	w.notify()
	s.mu.Unlock()
	if wasReady && w.spec.Addr != "" && s.onReady != nil {
		s.onReady(w.spec.Addr, false)
	}
	if err := s.persist(); err != nil {
		s.log.Error("recording exit", "id", w.spec.ID, "err", err)
	}
}

// wait waits out the backoff before w's next start; false when w was
// stopped or the supervisor closed meanwhile.
func (s *Supervisor) wait(w *workload) bool {
	s.mu.Lock()
	delay := s.backoff.Delay(w.crashes)
	w.crashes++
	restarts := w.restarts
	s.mu.Unlock()
	if delay <= 0 {
		select {
		case <-w.stop:
			return false
		case <-s.closing:
			return false
		default:
			return true
		}
	}
	fire := s.clock.After(delay) // registered before BackOff is visible, so a fake clock's Advance finds it
	now := s.clock.Now()
	s.mu.Lock()
	w.nextStart = now.Add(delay)
	w.setState(BackOff, now)
	w.notify()
	s.mu.Unlock()
	s.log.Info("workload backing off", "id", w.spec.ID, "delay", delay, "restarts", restarts)
	select {
	case <-fire:
		return true
	case <-w.stop:
		return false
	case <-s.closing:
		return false
	}
}

// setReady records a readiness verdict on p and tells Options.OnReady of
// a change. A verdict on a process that is no longer w's is dropped.
func (s *Supervisor) setReady(w *workload, p *proc, ready bool) {
	s.mu.Lock()
	if w.proc != p || w.ready == ready || w.stopping {
		s.mu.Unlock()
		return
	}
	w.ready = ready
	if ready {
		w.everReady = true
		w.setState(Running, s.clock.Now())
	}
	w.notify()
	s.mu.Unlock()
	s.log.Info("workload readiness changed", "id", w.spec.ID, "ready", ready)
	if w.spec.Addr != "" && s.onReady != nil {
		s.onReady(w.spec.Addr, ready)
	}
}

// stopWorkload ends w's run loop, then drains and stops its process. w
// stays in the table (State Stopping) until the caller forgets it.
func (s *Supervisor) stopWorkload(ctx context.Context, w *workload) error {
	s.mu.Lock()
	if !w.stopping {
		w.stopping = true
		close(w.stop)
	}
	w.setState(Stopping, s.clock.Now())
	w.nextStart = time.Time{}
	w.notify()
	s.mu.Unlock()
	<-w.done // prompt: the loop only waits on channels that are now closed
	s.mu.Lock()
	p, wasReady := w.proc, w.ready
	w.ready = false
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if addr := w.spec.Addr; addr != "" {
		if wasReady && s.onReady != nil {
			s.onReady(addr, false)
		}
		if s.drain != nil {
			s.drain(ctx, addr)
		}
	}
	err := s.stopProc(ctx, w.spec, p)
	s.mu.Lock()
	w.proc = nil
	w.notify()
	s.mu.Unlock()
	return err
}

// stopProc sends the stop signal to p's group, waits the grace period (cut
// short by ctx), then kills the group.
func (s *Supervisor) stopProc(ctx context.Context, sp Spec, p *proc) error {
	sig := syscall.SIGTERM
	if sp.StopSignal != 0 {
		sig = syscall.Signal(sp.StopSignal)
	}
	grace := sp.StopGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	if err := p.signalGroup(sig); err != nil {
		s.log.Warn("stopping workload", "id", sp.ID, "pid", p.pid, "err", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		s.log.Warn("workload did not stop in its grace period; killing it", "id", sp.ID, "pid", p.pid, "grace", grace)
	case <-ctx.Done():
	}
	if err := p.signalGroup(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing process %d: %w", p.pid, err)
	}
	k := time.NewTimer(10 * time.Second)
	defer k.Stop()
	select {
	case <-p.exited:
		return nil
	case <-k.C:
		return fmt.Errorf("process %d still runs 10s after SIGKILL", p.pid)
	}
}
