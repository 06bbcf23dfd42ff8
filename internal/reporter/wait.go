package reporter

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// recheckInterval is how often a waiter re-reads the store without being
// woken, in case a change was made by another process sharing the store.
const recheckInterval = 5 * time.Second

// Wait blocks until workflow's expectation is Succeeded or Failed and returns
// it. A workflow that is not submitted yet is waited for as well.
//
// When timeout passes first, Wait returns the expectation in phase Failed with
// a reason naming the apps that did not report; that outcome is not stored,
// so a later Get still shows Pending. The timeout counts from the
// expectation's submission (stored), so a wait resumed after a restart
// keeps its original deadline. A timeout <= 0 means no deadline. When ctx
// ends first, Wait returns ctx's error.
func (r *Reporter) Wait(ctx context.Context, workflow string, timeout time.Duration) (Expectation, error) {
	if err := validateName("workflow", workflow); err != nil {
		return Expectation{}, err
	}
	var deadline <-chan time.Time
	armed := false
	recheck := time.NewTicker(r.recheck)
	defer recheck.Stop()

	for {
		// Take the channel before reading the store, so a change made
		// between the read and the select still wakes us.
		changed := r.changes()
		exp, found, err := r.load(ctx, workflow)
		if err != nil {
			return Expectation{}, err
		}
		if found && exp.Phase != PhasePending {
			return exp, nil
		}
		if timeout > 0 && !armed {
			start := time.Now()
			if found && !exp.Created.IsZero() {
				start = exp.Created
			}
			t := time.NewTimer(time.Until(start.Add(timeout)))
			defer t.Stop()
			deadline, armed = t.C, true
		}
		select {
		case <-changed:
		case <-recheck.C:
		case <-deadline:
			return r.expire(ctx, workflow, timeout)
		case <-ctx.Done():
			return Expectation{}, fmt.Errorf("waiting for %s: %w", workflow, ctx.Err())
		}
	}
}

// expire reads workflow's state one last time once its deadline passed; a
// final report that just arrived still counts.
func (r *Reporter) expire(ctx context.Context, workflow string, timeout time.Duration) (Expectation, error) {
	exp, found, err := r.load(ctx, workflow)
	if err != nil {
		return Expectation{}, err
	}
	if found && exp.Phase != PhasePending {
		return exp, nil
	}
	exp.Phase = PhaseFailed
	if !found {
		exp.Reason = fmt.Sprintf("deadline %s passed before workflow %s was submitted", timeout, workflow)
		return exp, nil
	}
	exp.Reason = fmt.Sprintf("deadline %s passed waiting for reports from: %s",
		timeout, strings.Join(missing(exp.Apps, exp.Reports), ", "))
	r.logger.Warn("expectation deadline passed", "workflow", workflow, "reason", exp.Reason)
	return exp, nil
}
