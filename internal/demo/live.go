package demo

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/runway-cd/runway/internal/pipeline"
)

// liveWidth bounds a line of the live view, in columns: a wrapped line
// would throw off the redraw's count.
const liveWidth = 78

// liveRedraw is how often the live view is drawn again while nothing
// changed, for the running step's duration.
const liveRedraw = 250 * time.Millisecond

// liveView redraws the followed pipeline in place on a terminal: each
// step with its status and duration, the canary's weight, and notes (the
// staging environment's URL). Safe for concurrent use.
type liveView struct {
	mu     sync.Mutex
	out    io.Writer
	p      *pipeline.Pipeline
	canary string
	notes  []string
	drawn  int // lines drawn last
	last   time.Time
	done   bool
}

func newLiveView(out io.Writer) *liveView { return &liveView{out: out} }

func (v *liveView) setPipeline(p *pipeline.Pipeline) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.p = p
	v.drawLocked()
}

func (v *liveView) setCanary(r rolloutStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.canary = fmt.Sprintf("canary %s: step %d/%d, weight %d%%, %s", r.CanaryVersion, r.Step, r.Steps, r.Weight, r.Message)
	for _, a := range r.Analyses {
		if a.Phase != "Running" {
			v.canary += fmt.Sprintf("; analysis %s %s", a.Name, a.Phase)
		}
	}
	v.drawLocked()
}

func (v *liveView) note(s string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.notes = append(v.notes, s)
	v.drawLocked()
}

// tick draws again when the last draw is older than liveRedraw.
func (v *liveView) tick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.last) >= liveRedraw {
		v.drawLocked()
	}
}

// finish draws the view a last time and leaves it on the screen.
func (v *liveView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.drawLocked()
	v.done = true
}

func (v *liveView) drawLocked() {
	if v.done || v.p == nil {
		return
	}
	var b strings.Builder
	if v.drawn > 0 {
		// Up to the view's first line, and clear from there down.
		fmt.Fprintf(&b, "\x1b[%dF\x1b[J", v.drawn)
	}
	lines := v.render()
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	v.drawn, v.last = len(lines), time.Now()
	_, _ = io.WriteString(v.out, b.String())
}

// Marks and colours of the steps' phases: the word is always there too.
var liveMarks = map[pipeline.Phase]struct{ mark, color string }{
	pipeline.Pending:    {"·", "\x1b[2m"},
	pipeline.Queued:     {"·", "\x1b[33m"},
	pipeline.Running:    {"▶", "\x1b[36m"},
	pipeline.Succeeded:  {"✓", "\x1b[32m"},
	pipeline.Failed:     {"✗", "\x1b[31m"},
	pipeline.Skipped:    {"-", "\x1b[2m"},
	pipeline.Cancelled:  {"-", "\x1b[2m"},
	pipeline.Superseded: {"-", "\x1b[2m"},
}

func (v *liveView) render() []string {
	p := v.p
	lines := []string{fit(fmt.Sprintf("pipeline %s  %s  %s", p.ID, p.Phase, p.Version))}
	for _, s := range p.Steps {
		m, ok := liveMarks[s.Phase]
		if !ok {
			m.mark = "?"
		}
		d := ""
		if !s.Started.IsZero() {
			d = roundDuration(s.Duration()).String()
		}
		text := fit(fmt.Sprintf("  %s %-28s %-10s %s", m.mark, s.Name, s.Phase, d))
		if m.color != "" {
			text = m.color + text + "\x1b[0m"
		}
		lines = append(lines, text)
	}
	if v.canary != "" {
		lines = append(lines, fit("  "+v.canary))
	}
	for _, n := range v.notes {
		lines = append(lines, fit("  "+n))
	}
	return lines
}

// fit cuts s to liveWidth columns.
func fit(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if utf8.RuneCountInString(s) <= liveWidth {
		return s
	}
	return string([]rune(s)[:liveWidth-1]) + "…"
}

// roundDuration keeps two significant digits of a short step and tenths
// of a second of a longer one.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
