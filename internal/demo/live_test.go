package demo

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runway-cd/runway/internal/pipeline"
)

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

func TestLiveView(t *testing.T) {
	var out bytes.Buffer
	v := newLiveView(&out)
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p := &pipeline.Pipeline{ID: "homelabping-1", Phase: pipeline.Running, Version: "v20261201120000", Steps: []pipeline.Step{
		{Name: pipeline.StepVersion, Phase: pipeline.Succeeded, Started: start, Finished: start.Add(1200 * time.Millisecond)},
		{Name: pipeline.StepBuildApp, Phase: pipeline.Running, Started: start},
		{Name: pipeline.StepTeardown, Phase: pipeline.Pending},
	}}
	v.setPipeline(p)
	first := out.String()
	if strings.Contains(first, "\x1b[4F") || !strings.Contains(first, "✓ version") || !strings.Contains(first, "1.2s") {
		t.Fatalf("first draw %q", first)
	}
	out.Reset()
	v.setCanary(rolloutStatus{CanaryVersion: "v20261201120000", Step: 2, Steps: 5, Weight: 20, Message: strings.Repeat("a long message ", 10)})
	second := out.String()
	// The second draw goes back over the first's 4 lines and clears them.
	if !strings.HasPrefix(second, "\x1b[4F\x1b[J") || !strings.Contains(second, "weight 20%") {
		t.Fatalf("second draw %q", second)
	}
	for _, line := range strings.Split(strings.TrimSuffix(ansi.ReplaceAllString(second, ""), "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > liveWidth {
			t.Fatalf("line of %d columns would wrap: %q", n, line)
		}
	}
	v.finish()
	out.Reset()
	v.note("after the end")
	if out.Len() != 0 {
		t.Fatalf("drawn after finish: %q", out.String())
	}
}
