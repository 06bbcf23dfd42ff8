package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// The charts are SVG drawn on the server: a view box of chartW × chartH
// with the plot inside the margins. The page's stylesheet colours them;
// shapes and labels carry the meaning as well.
const (
	chartW, chartH = 600, 220
	marginL        = 52
	marginR        = 16
	marginT        = 14
	marginB        = 30
)

// chart is an SVG chart ready for the "chart" template.
type chart struct {
	ID          string // unique on the page, for aria-labelledby
	Title, Desc string
	W, H        int
	// Areas are filled polygons, Lines polylines: "x,y x,y ...".
	Areas  []shape
	Lines  []shape
	Marks  []mark
	HLines []hline
	YTicks []tick
	XTicks []tick
	// Legend entries, drawn above the plot.
	Legend []shape
	Empty  string // shown instead of a plot when there is nothing
	// Plot's edges, for the axes.
	X0, X1, Y0, Y1 string
}

type shape struct {
	Points string
	Class  string
	Label  string
}

type mark struct {
	X, Y  string
	Shape string // circle, cross, square, triangle, ring
	Class string
	Label string
}

type hline struct {
	Y     string
	Label string
	Class string
	LX    string
}

type tick struct {
	At    string
	Label string
}

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

func newChart(id, title, desc string) chart {
	return chart{ID: id, Title: title, Desc: desc, W: chartW, H: chartH,
		X0: f1(marginL), X1: f1(chartW - marginR), Y0: f1(chartH - marginB), Y1: f1(marginT)}
}

// scale maps [lo, hi] onto [a, b].
func scale(v, lo, hi, a, b float64) float64 {
	if hi == lo {
		return (a + b) / 2
	}
	return a + (v-lo)/(hi-lo)*(b-a)
}

// trafficChart draws the canary's weight over time as a step line: the
// canary's share filled from the bottom, the stable's above it.
func trafficChart(id string, pts []point, end time.Time) chart {
	c := newChart(id, "Traffic split over time", "Percent of requests to the canary (lower band) and to the stable version (upper band).")
	if len(pts) == 0 {
		c.Empty = "No traffic history yet: it is sampled while the dashboard runs."
		return c
	}
	t0 := pts[0].At
	if !end.After(pts[len(pts)-1].At) {
		end = pts[len(pts)-1].At.Add(time.Second)
	}
	span := end.Sub(t0).Seconds()
	x := func(t time.Time) float64 { return scale(t.Sub(t0).Seconds(), 0, span, marginL, chartW-marginR) }
	y := func(w int) float64 { return scale(float64(w), 0, 100, chartH-marginB, marginT) }
	var line []string
	for i, p := range pts {
		next := end
		if i+1 < len(pts) {
			next = pts[i+1].At
		}
		line = append(line, f1(x(p.At))+","+f1(y(p.Weight)), f1(x(next))+","+f1(y(p.Weight)))
	}
	join := func(s []string) string {
		out := ""
		for i, p := range s {
			if i > 0 {
				out += " "
			}
			out += p
		}
		return out
	}
	bottom := f1(x(end)) + "," + f1(y(0)) + " " + f1(x(t0)) + "," + f1(y(0))
	top := f1(x(end)) + "," + f1(y(100)) + " " + f1(x(t0)) + "," + f1(y(100))
	c.Areas = []shape{
		{Points: join(line) + " " + bottom, Class: "canary", Label: "canary"},
		{Points: join(line) + " " + top, Class: "stable", Label: "stable"},
	}
	c.Lines = []shape{{Points: join(line), Class: "weight"}}
	for _, p := range pts {
		c.Marks = append(c.Marks, mark{X: f1(x(p.At)), Y: f1(y(p.Weight)), Shape: "circle", Class: "weight",
			Label: fmt.Sprintf("%s: step %d, canary %d%%, stable %d%%", clockTime(p.At), p.Step+1, p.Weight, 100-p.Weight)})
	}
	for _, w := range []int{0, 25, 50, 75, 100} {
		c.YTicks = append(c.YTicks, tick{At: f1(y(w)), Label: strconv.Itoa(w) + "%"})
	}
	c.XTicks = []tick{{At: f1(x(t0)), Label: pts[0].At.UTC().Format("15:04:05")}, {At: f1(x(end)), Label: end.UTC().Format("15:04:05")}}
	c.Legend = []shape{{Class: "canary", Label: "canary"}, {Class: "stable", Label: "stable"}}
	return c
}

// metricChart draws a metric's measurements (the first value of each, in
// order) with its success and failure thresholds.
func metricChart(id string, m metricView) chart {
	c := newChart(id, "Measurements of "+m.Name, "Each measurement's first value; its shape is its phase. Dashed lines are the thresholds.")
	type val struct {
		v  float64
		ms measurementView
	}
	var vals []val
	for _, ms := range m.Measurements {
		if v, ok := firstValue(ms.Value); ok {
			vals = append(vals, val{v, ms})
		}
	}
	succ, sok := parseThreshold(m.SuccessCondition)
	fail, fok := parseThreshold(m.FailureCondition)
	if len(vals) == 0 {
		c.Empty = "No numeric measurement yet."
		return c
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = math.Min(lo, v.v), math.Max(hi, v.v)
	}
	if sok {
		lo, hi = math.Min(lo, succ.Value), math.Max(hi, succ.Value)
	}
	if fok {
		lo, hi = math.Min(lo, fail.Value), math.Max(hi, fail.Value)
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	hi += (hi - lo) * 0.1
	n := len(vals)
	x := func(i int) float64 {
		if n == 1 {
			return (marginL + chartW - marginR) / 2
		}
		return scale(float64(i), 0, float64(n-1), marginL+8, chartW-marginR-8)
	}
	y := func(v float64) float64 { return scale(v, lo, hi, chartH-marginB, marginT) }
	pts := ""
	for i, v := range vals {
		if i > 0 {
			pts += " "
		}
		pts += f1(x(i)) + "," + f1(y(v.v))
		shape, class := phaseShape(v.ms)
		c.Marks = append(c.Marks, mark{X: f1(x(i)), Y: f1(y(v.v)), Shape: shape, Class: class,
			Label: fmt.Sprintf("#%d %s: %s (%s)", i+1, clockTime(v.ms.FinishedAt), v.ms.Value, v.ms.Phase)})
	}
	c.Lines = []shape{{Points: pts, Class: "series"}}
	if sok {
		c.HLines = append(c.HLines, hline{Y: f1(y(succ.Value)), Class: "thr-ok", LX: f1(chartW - marginR - 4),
			Label: "success if " + succ.Op + " " + strconv.FormatFloat(succ.Value, 'g', -1, 64)})
	}
	if fok {
		c.HLines = append(c.HLines, hline{Y: f1(y(fail.Value)), Class: "thr-bad", LX: f1(chartW - marginR - 4),
			Label: "failure if " + fail.Op + " " + strconv.FormatFloat(fail.Value, 'g', -1, 64)})
	}
	for i := range 5 {
		v := lo + (hi-lo)*float64(i)/4
		c.YTicks = append(c.YTicks, tick{At: f1(y(v)), Label: strconv.FormatFloat(v, 'g', 3, 64)})
	}
	c.XTicks = []tick{{At: f1(x(0)), Label: "#1"}}
	if n > 1 {
		c.XTicks = append(c.XTicks, tick{At: f1(x(n - 1)), Label: "#" + strconv.Itoa(n)})
	}
	return c
}

// phaseShape is how a measurement's phase is drawn.
func phaseShape(m measurementView) (shape, class string) {
	if m.NotCounted {
		return "ring", "idle"
	}
	switch m.Phase {
	case "Successful":
		return "circle", "ok"
	case "Failed":
		return "cross", "bad"
	case "Error":
		return "triangle", "bad"
	case "Inconclusive":
		return "square", "wait"
	}
	return "ring", "idle"
}
