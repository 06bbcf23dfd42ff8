package gatewayproc

import (
	"context"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// Watch checks the gateway process every 200 milliseconds, and at once when
// a process it started exits, until ctx ends or Stop is called. When the
// process has died it starts a new one on the same addresses, which loads
// its routes from StatePath, records it, and calls onRestart, if not nil,
// with the gap: the time from noticing the death to the new process
// answering. A failed restart is logged and tried again at the next check.
func (h *Handle) Watch(ctx context.Context, onRestart func(gap time.Duration)) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	var diedAt time.Time // zero while the gateway runs
	for {
		h.mu.Lock()
		exited := h.proc.exited
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-exited: // nil for an adopted process: never ready
		case <-t.C:
		}
		gap, restarted, stop := h.check(ctx, &diedAt)
		if stop {
			return
		}
		if restarted && onRestart != nil {
			onRestart(gap)
		}
	}
}

// check restarts the gateway if it has died. It reports the gap of a
// restart, whether one happened, and whether Watch should end.
func (h *Handle) check(ctx context.Context, diedAt *time.Time) (gap time.Duration, restarted, stop bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped || ctx.Err() != nil {
		return 0, false, true
	}
	if procfs.Running(h.proc.pid, h.proc.start) {
		return 0, false, false
	}
	if diedAt.IsZero() {
		*diedAt = time.Now()
		h.log.Warn("gateway process died; restarting it", "pid", h.proc.pid)
		// Its exit has been seen; from now on only the ticker drives
		// retries.
		h.proc.exited = nil
	}
	p, err := h.start(ctx)
	if err != nil {
		h.log.Error("restarting gateway", "err", err)
		return 0, false, false
	}
	h.proc = p
	if err := writeRecord(h.o.RecordPath, h.record()); err != nil {
		// The gateway serves; only a control plane restart would miss it.
		h.log.Error("recording restarted gateway", "pid", p.pid, "err", err)
	}
	gap = time.Since(*diedAt)
	*diedAt = time.Time{}
	h.log.Info("gateway restarted", "pid", p.pid, "gap", gap)
	return gap, true, false
}
