package postgres

import "time"

// firstPoll is the first wait between checks of a server that is getting
// ready; each wait doubles up to readyPoll. A server started from an
// initialised data dir accepts connections after some 20-40ms, so the
// first checks come soon and the later ones do not flood a slow start.
const firstPoll = 2 * time.Millisecond

// poller paces the checks of a condition: firstPoll, then doubling up to
// readyPoll.
type poller struct {
	timer *time.Timer
	next  time.Duration
}

func newPoller() *poller {
	return &poller{next: firstPoll}
}

// wait returns a channel that receives once the next wait is over.
func (p *poller) wait() <-chan time.Time {
	if p.timer == nil {
		p.timer = time.NewTimer(p.next)
	} else {
		p.timer.Reset(p.next)
	}
	p.next = min(2*p.next, readyPoll)
	return p.timer.C
}

// stop releases the timer.
func (p *poller) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
