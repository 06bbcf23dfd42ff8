package rollout

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/reporter"
)

// An abort reason comes from outside (the API, a pipeline's error): it
// must reach the status, the reporter and the revert commit as one short
// line, whatever it holds.
func TestAbortReasonIsOneShortLine(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		// want must appear in the status, the report and the commit.
		want string
	}{
		{name: "forged trailer", reason: "bad canary\nSigned-off-by: x <x@example.com>\n\nCo-authored-by: y", want: "aborted by request: bad canary Signed-off-by: x <x@example.com> Co-authored-by: y"},
		{name: "control characters", reason: "a\r\x1b[31mred\x00b\u2028c", want: "aborted by request: a [31mred b c"},
		{name: "70 KB", reason: strings.Repeat("é long reason\n", 70<<10/15), want: "aborted by request: é long reason é long reason"},
		{name: "empty", reason: "\n\t", want: "aborted by request: no reason given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.start(t, parseSpec(t, "      - setWeight: 10\n      - pause: {}\n"))
			fx.waitPaused(t)
			if err := fx.ctl.Abort(env, app, tt.reason); err != nil {
				t.Fatal(err)
			}
			st := fx.wait(t)
			fx.assertAborted(t, st, tt.want)
			_, msg := fx.production(t)
			ups := fx.reports.all()
			for what, text := range map[string]string{"status": st.Message, "report": ups[0].Message, "commit subject": strings.TrimRight(msg, "\n")} {
				if strings.ContainsAny(text, "\r\n\x00\x1b\u2028") || !utf8.ValidString(text) {
					t.Errorf("%s is not one clean line: %q", what, text)
				}
			}
			for _, line := range strings.Split(msg, "\n") {
				if strings.HasPrefix(line, "Signed-off-by:") || strings.HasPrefix(line, "Co-authored-by:") {
					t.Errorf("revert commit has a trailer line %q: %q", line, msg)
				}
			}
			if len(ups[0].Message) > oneline.MaxReason {
				t.Errorf("report message is %d bytes, want at most %d", len(ups[0].Message), oneline.MaxReason)
			}
			if len(msg) > 2*maxAbortReason || len(st.Message) > 2*maxAbortReason {
				t.Errorf("commit message %d bytes, status %d bytes: not bounded", len(msg), len(st.Message))
			}
		})
	}
}

// A 70 KB abort reason once left the pipeline waiting out the rollout
// deadline: the reporter refused the report. With the real reporter the
// failure now arrives at once. (The SQLite store imports this package, so
// the reporter keeps its state in reporterStore here.)
func TestLongAbortReasonReachesTheRealReporter(t *testing.T) {
	rep := reporter.New(&reporterStore{apps: map[string][]string{}, reports: map[string]map[string]reporter.Report{}}, nil)
	if err := rep.Submit(t.Context(), workflow, []string{app}); err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, nil)
	fx.reporter = rep
	fx.ctl = fx.newController()
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - pause: {}\n"))
	fx.waitPaused(t)
	if err := fx.ctl.Abort(env, app, strings.Repeat("x", 70<<10)); err != nil {
		t.Fatal(err)
	}
	fx.until(t, "abort end", func() bool { _, ok := fx.finished(canaryVersion); return ok })
	exp, err := rep.Wait(t.Context(), workflow, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if exp.Phase != reporter.PhaseFailed {
		t.Fatalf("expectation %s (%s), want Failed at once", exp.Phase, exp.Reason)
	}
	if r := exp.Reports[app]; r.Success || !strings.Contains(r.Message, "aborted by request: xxx") || len(r.Message) > oneline.MaxReason {
		t.Fatalf("report %+v, want a failure of at most %d bytes", r, oneline.MaxReason)
	}
}

// reporterStore is an in-memory reporter.Store.
type reporterStore struct {
	mu      sync.Mutex
	apps    map[string][]string
	reports map[string]map[string]reporter.Report
	token   string
}

func (m *reporterStore) SaveExpectation(_ context.Context, workflow string, apps []string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apps[workflow] = apps
	return nil
}

func (m *reporterStore) SaveReport(_ context.Context, workflow string, r reporter.Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reports[workflow] == nil {
		m.reports[workflow] = map[string]reporter.Report{}
	}
	m.reports[workflow][r.App] = r
	return nil
}

func (m *reporterStore) LoadExpectation(_ context.Context, workflow string) ([]string, time.Time, []reporter.Report, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	apps, found := m.apps[workflow]
	var reports []reporter.Report
	for _, r := range m.reports[workflow] {
		reports = append(reports, r)
	}
	return apps, time.Time{}, reports, found, nil
}

func (m *reporterStore) ExpectationToken(_ context.Context, workflow, ifNone string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, found := m.apps[workflow]; !found {
		return "", false, nil
	}
	if m.token == "" {
		m.token = ifNone
	}
	return m.token, true, nil
}
