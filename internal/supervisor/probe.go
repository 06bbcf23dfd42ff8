package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// Probe defaults.
const (
	defaultPeriod    = time.Second
	defaultTimeout   = time.Second
	defaultThreshold = 3
	// firstProbe is the interval of readiness probes of a process not yet
	// ready; it doubles up to the Period.
	firstProbe = 2 * time.Millisecond
)

func (pr Probe) withDefaults() Probe {
	if pr.Period <= 0 {
		pr.Period = defaultPeriod
	}
	if pr.Timeout <= 0 {
		pr.Timeout = defaultTimeout
	}
	if pr.FailureThreshold <= 0 {
		pr.FailureThreshold = defaultThreshold
	}
	return pr
}

// startProbes starts p's readiness and liveness probes, which end with ctx.
func (s *Supervisor) startProbes(ctx context.Context, wg *sync.WaitGroup, w *workload, p *proc) {
	if pr := w.spec.Readiness; pr != nil {
		wg.Go(func() { s.probeReadiness(ctx, w, p, pr.withDefaults()) })
	}
	if pr := w.spec.Liveness; pr != nil {
		wg.Go(func() { s.probeLiveness(ctx, w, p, pr.withDefaults()) })
	}
}

// probeReadiness probes until ctx ends: fast while p is not ready, every
// Period once it is.
func (s *Supervisor) probeReadiness(ctx context.Context, w *workload, p *proc, pr Probe) {
	interval, ready, fails := firstProbe, false, 0
	for {
		err := s.probeOnce(ctx, w.spec.Addr, pr)
		if ctx.Err() != nil {
			return
		}
		if err == nil && !ready && w.spec.Credential {
			// The port is kept across restarts, and between an exit and
			// the restart's bind any local process may take it and answer
			// the probe: a squatter must never be made ready, and the
			// gateway is told never to send it anything. Once the workload
			// holds the port, no other uid can bind it.
			oerr := portOwnedBy(w.spec.Addr, w.spec.UID)
			var te *portTakenError
			switch isTaken := errors.As(oerr, &te); {
			case isTaken && !w.portTaken.Swap(true):
				s.log.Warn("readiness probe answered by another user's socket", "id", w.spec.ID, "err", oerr)
				if s.onTaken != nil {
					s.onTaken(w.spec.Addr, true)
				}
			case !isTaken && oerr == nil && w.portTaken.Swap(false):
				if s.onTaken != nil {
					s.onTaken(w.spec.Addr, false)
				}
			}
			if oerr != nil {
				err = oerr
			}
		}
		switch {
		case err == nil:
			fails = 0
			if !ready {
				ready = true
				p.probedReady.Store(true)
				s.setReady(w, p, true)
			}
		default:
			fails++
			if ready && fails >= pr.FailureThreshold {
				ready = false
				s.log.Warn("readiness probe failed", "id", w.spec.ID, "failures", fails, "err", err)
				s.setReady(w, p, false)
				interval = firstProbe
			}
		}
		if ready {
			interval = pr.Period
		}
		if !sleep(ctx, interval) {
			return
		}
		interval = min(interval*2, pr.Period)
	}
}

// probeLiveness kills p's group after FailureThreshold failures in a row,
// counted once p has come up: the liveness probe passed once, or the
// readiness probe did.
func (s *Supervisor) probeLiveness(ctx context.Context, w *workload, p *proc, pr Probe) {
	interval, passed, fails := firstProbe, false, 0
	for {
		err := s.probeOnce(ctx, w.spec.Addr, pr)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			passed, fails = true, 0
		case passed || p.probedReady.Load():
			fails++
			if fails >= pr.FailureThreshold {
				s.log.Warn("liveness probe failed; killing the workload", "id", w.spec.ID, "pid", p.pid, "failures", fails, "err", err)
				p.livenessFailed.Store(true)
				if err := p.signalGroup(syscall.SIGKILL); err != nil {
					s.log.Error("killing workload after liveness failure", "id", w.spec.ID, "err", err)
				}
				return
			}
		}
		if passed {
			interval = pr.Period
		}
		if !sleep(ctx, interval) {
			return
		}
		interval = min(interval*2, pr.Period)
	}
}

// probeOnce is one probe of addr: an HTTP GET of pr.Path that passes on
// 2xx, or with Path "" a TCP connect.
func (s *Supervisor) probeOnce(ctx context.Context, addr string, pr Probe) error {
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout)
	defer cancel()
	if pr.Path == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+pr.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "runway-supervisor")
	resp, err := s.probes.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", pr.Path, resp.Status)
	}
	return nil
}

// sleep waits d (real time: probes wait for real processes); false when
// ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// portOwnedBy checks that a socket listens where a connection to addr goes
// (addr itself, or the wildcard address on its port) and that every such
// socket is uid's.
func portOwnedBy(addr string, uid uint32) error {
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ls, err := procfs.Listeners()
	if err != nil {
		return fmt.Errorf("checking who holds %s: %w", addr, err)
	}
	found := false
	for _, l := range ls {
		a := l.Addr.Addr().Unmap()
		if l.Addr.Port() != want.Port() || (a != want.Addr() && !a.IsUnspecified()) {
			continue
		}
		if l.UID != uid {
			return &portTakenError{addr: addr, holder: l.UID, want: uid}
		}
		found = true
	}
	if !found {
		return fmt.Errorf("%s answered, but no socket listens on it", addr)
	}
	return nil
}

// portTakenError is a workload's address held by another uid's socket.
type portTakenError struct {
	addr         string
	holder, want uint32
}

func (e *portTakenError) Error() string {
	return fmt.Sprintf("%s is held by uid %d, not the workload's uid %d", e.addr, e.holder, e.want)
}
