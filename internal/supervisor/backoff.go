package supervisor

import "time"

// Default restart schedule (see the package doc).
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultBackoffReset   = 10 * time.Minute
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Reset <= 0 {
		b.Reset = DefaultBackoffReset
	}
	return b
}

// Delay is the wait before restart number n+1 of a crash loop (n restarts
// already made since the last run of Reset or longer): 0 for the first,
// then Initial, doubling, capped at Max. Zero fields take the defaults.
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	if n <= 0 {
		return 0
	}
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ { // bounded by n and by the doubling reaching Max
		d *= 2
	}
	return min(d, b.Max)
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
