package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"
	"unicode/utf8"
)

// funcs are the templates' helpers.
func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"short":     shortSHA,
		"firstLine": func(s string) string { return firstLine(s, 100) },
		"icon":      icon,
		"status":    statusClass,
		"duration":  func(start, end time.Time) string { return duration(start, end, now()) },
		"ago":       func(t time.Time) string { return ago(t, now()) },
		"until":     func(t time.Time) string { return until(t, now()) },
		"clock":     func(t time.Time) string { return clockTime(t) },
		"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"pct":       func(w int) int { return 100 - w },
		"add":       func(a, b int) int { return a + b },
	}
}

// shortSHA is a commit's first 7 hex digits.
func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// firstLine is s's first line, cut to max bytes at a rune boundary.
func firstLine(s string, max int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.TrimSpace(s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// icon is a phase's shape, shown with its name: colour is never the only
// signal.
func icon(phase string) string {
	switch phase {
	case "Succeeded", "Successful", "Healthy", "Promoted", "Ready":
		return "✓"
	case "Failed", "Error", "Aborted", "Degraded":
		return "✗"
	case "Running", "Progressing", "Starting":
		return "▶"
	case "Paused", "Inconclusive", "Queued":
		return "‖"
	case "Cancelled":
		return "⊘"
	case "Superseded":
		return "↷"
	case "Skipped":
		return "–"
	}
	return "○"
}

// statusClass is a phase's CSS class.
func statusClass(phase string) string {
	switch icon(phase) {
	case "✓":
		return "ok"
	case "✗":
		return "bad"
	case "▶":
		return "run"
	case "‖":
		return "wait"
	}
	return "idle"
}

// duration is end-start (now-start while not ended), "" before start.
func duration(start, end, now time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = now
	}
	return human(end.Sub(start))
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return human(now.Sub(t)) + " ago"
}

func until(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	if !t.After(now) {
		return "due now"
	}
	return "in " + human(t.Sub(now))
}

// human is a duration to the second, as people read it: 4s, 2m05s,
// 3h10m, 2d4h.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func clockTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// tail is the end of a log: at most max bytes, from a line start when
// there is one.
func tail(log string, max int) string {
	if len(log) <= max {
		return log
	}
	t := log[len(log)-max:]
	if i := strings.IndexByte(t, '\n'); i >= 0 && i < len(t)-1 {
		t = t[i+1:]
	}
	return strings.ToValidUTF8(t, "")
}
