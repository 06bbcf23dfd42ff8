package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Output formats of -o.
const (
	formatTable = "table"
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputFlag adds -o to cmd's persistent flags.
func outputFlag(cmd *cobra.Command, format *string) {
	cmd.PersistentFlags().StringVarP(format, "output", "o", formatTable, "output format: table, wide (more columns), json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{formatTable, formatWide, formatJSON, formatYAML}, cobra.ShellCompDirectiveNoFileComp))
}

// printer prints objects for people (tables, colour on a terminal) or for
// scripts (JSON, YAML).
type printer struct {
	out    io.Writer
	format string
	color  bool
	now    time.Time
}

func (p *printer) check() error {
	switch p.format {
	case formatTable, formatWide, formatJSON, formatYAML:
		return nil
	}
	return usagef("-o %q: want table, wide, json or yaml", p.format)
}

func (p *printer) wide() bool { return p.format == formatWide }

// print writes v as JSON or YAML, or else calls human.
func (p *printer) print(v any, human func() error) error {
	switch p.format {
	case formatJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding JSON: %w", err)
		}
		_, err = fmt.Fprintf(p.out, "%s\n", b)
		return err
	case formatYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding YAML: %w", err)
		}
		_, err = p.out.Write(b)
		return err
	}
	return human()
}

// ANSI colours of a status cell. Colour only adds to the text, which is
// always there.
const (
	colorNone   = ""
	colorGreen  = "\x1b[32m"
	colorRed    = "\x1b[31m"
	colorYellow = "\x1b[33m"
	colorBlue   = "\x1b[36m"
	colorDim    = "\x1b[2m"
	colorBold   = "\x1b[1m"
	colorReset  = "\x1b[0m"
)

// statusColor is the colour of a pipeline, step, rollout or analysis
// phase.
func statusColor(phase string) string {
	switch phase {
	case "Succeeded", "Successful", "Healthy", "true":
		return colorGreen
	case "Failed", "Error", "Degraded", "false":
		return colorRed
	case "Running", "Progressing":
		return colorBlue
	case "Pending", "Queued", "Paused", "Inconclusive":
		return colorYellow
	case "Skipped", "Cancelled", "Superseded":
		return colorDim
	}
	return colorNone
}

// paint wraps s in colour c when the printer colours.
func (p *printer) paint(c, s string) string {
	if !p.color || c == colorNone || s == "" {
		return s
	}
	return c + s + colorReset
}

// cell is a table cell: its text and colour.
type cell struct {
	text  string
	color string
}

// table is rows of cells under a header, aligned on the cells' visible
// width (text/tabwriter would count the colours' escape codes).
type table struct {
	header []string
	rows   [][]cell
}

func (t *table) add(cells ...cell) {
	for i := range cells {
		cells[i].text = printable(cells[i].text)
	}
	t.rows = append(t.rows, cells)
}

// printable is s with every control character (C0, DEL, C1: an escape
// sequence in a commit message or an app's name, which would steer the
// terminal) shown as U+FFFD. Table cells and fields come from pushes and
// apps that Runway does not trust; logs are printed as they are, like
// kubectl logs.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		// Format characters too: a bidi override or a zero-width joiner
		// would reorder or hide the rest of a row.
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// write prints the table, columns three spaces apart.
func (t *table) write(p *printer) error {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
			}
		}
	}
	var b strings.Builder
	line := func(cells []cell) {
		var l strings.Builder
		for i, c := range cells {
			text := c.text
			if i < len(cells)-1 {
				text += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(text)+3)
				l.WriteString(p.paint(c.color, c.text) + text[len(c.text):])
				continue
			}
			l.WriteString(p.paint(c.color, text))
		}
		b.WriteString(strings.TrimRight(l.String(), " "))
		b.WriteByte('\n')
	}
	hdr := make([]cell, len(t.header))
	for i, h := range t.header {
		hdr[i] = cell{text: h}
	}
	line(hdr)
	for _, r := range t.rows {
		line(r)
	}
	_, err := io.WriteString(p.out, b.String())
	return err
}

// fields prints "Name: value" lines, the names aligned.
func (p *printer) fields(pairs ...cell) error {
	width := 0
	for i := 0; i < len(pairs); i += 2 {
		width = max(width, len(pairs[i].text))
	}
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		if v.text == "" {
			continue
		}
		fmt.Fprintf(&b, "%-*s  %s\n", width+1, pairs[i].text+":", p.paint(v.color, printable(v.text)))
	}
	_, err := io.WriteString(p.out, b.String())
	return err
}

// kv is a name and its value for fields.
func kv(name, value string) []cell { return []cell{{text: name}, {text: value}} }

// flat joins fields' pairs.
func flat(pairs ...[]cell) []cell {
	var out []cell
	for _, p := range pairs {
		out = append(out, p...)
	}
	return out
}

// age is how long ago t was, the way kubectl shows it: 45s, 12m, 5h, 3d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// span is how long from start to end (to now while end is zero); "-"
// before start.
func span(now, start, end time.Time) string {
	if start.IsZero() {
		return "-"
	}
	if end.IsZero() {
		end = now
	}
	return duration(end.Sub(start))
}

// duration is d rounded for people: 40ms, 12.3s, 1m5s, 2h3m.
func duration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// truncate cuts s to its first line, at most n runes, marking a cut with
// an ellipsis.
func truncate(s string, n int) string {
	line, _, more := strings.Cut(strings.TrimSpace(s), "\n")
	line = strings.TrimSpace(line)
	if utf8.RuneCountInString(line) > n {
		r := []rune(line)
		return string(r[:n-1]) + "…"
	}
	if more {
		return line + " …"
	}
	return line
}

// orDash is s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortSHA is the first 7 characters of a commit.
func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return orDash(s)
}

// authorName is "Name" of "Name <email>".
func authorName(s string) string {
	name, _, _ := strings.Cut(s, " <")
	return strings.TrimSpace(name)
}

// stamp is t in UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
