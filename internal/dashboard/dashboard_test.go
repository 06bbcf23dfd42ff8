package dashboard

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
	clocktesting "k8s.io/utils/clock/testing"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// hostile is a name an attacker controls (an app, a commit message, a
// log line): it must come out as text.
const hostile = `<script>alert(1)</script>"'&`

// Hand-written fakes of what the dashboard reads.
type fakePipelines struct {
	mu        sync.Mutex
	ps        []*pipeline.Pipeline
	cancelled []string
}

func (f *fakePipelines) Get(_ context.Context, id string) (*pipeline.Pipeline, error) {
	for _, p := range f.ps {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, pipeline.ErrNotFound
}

func (f *fakePipelines) List(context.Context, int) ([]*pipeline.Pipeline, error) { return f.ps, nil }

func (f *fakePipelines) Cancel(_ context.Context, id, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id+": "+reason)
	return nil
}

type fakeEnvs []environment.EnvStatus

func (f fakeEnvs) Status() []environment.EnvStatus { return f }

type fakeRollouts struct {
	mu      sync.Mutex
	sts     []rollout.Status
	actions []string
	lists   int // calls of List
}

func (f *fakeRollouts) List() []rollout.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return append([]rollout.Status(nil), f.sts...)
}

func (f *fakeRollouts) act(a, env, app string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, a+" "+env+"/"+app)
	if a == "promote" && (len(f.sts) == 0 || f.sts[0].Phase != rollout.Paused) {
		return rollout.ErrNotPaused
	}
	return nil
}
func (f *fakeRollouts) Promote(env, app string) error       { return f.act("promote", env, app) }
func (f *fakeRollouts) PromoteFull(env, app string) error   { return f.act("full", env, app) }
func (f *fakeRollouts) Abort(env, app, reason string) error { return f.act("abort:"+reason, env, app) }
func (f *fakeRollouts) Retry(env, app string) error         { return f.act("retry", env, app) }

type fakeRuns []analysis.RunRecord

func (f fakeRuns) GetAnalysisRun(_ context.Context, name string) (analysis.RunRecord, error) {
	for _, r := range f {
		if r.Name == name {
			return r, nil
		}
	}
	return analysis.RunRecord{}, analysis.ErrRunNotFound
}
func (f fakeRuns) ListAnalysisRuns(context.Context, int) ([]analysis.RunRecord, error) { return f, nil }

type fixture struct {
	pipelines *fakePipelines
	rollouts  *fakeRollouts
	events    *events.Recorder
	d         *Dashboard
}

func newFixture() *fixture {
	f := &fixture{
		pipelines: &fakePipelines{ps: []*pipeline.Pipeline{
			{ID: "p2", App: "web", Commit: "0123456789abcdef", Message: "Fix the thing\n\nlong body", Author: "Ada",
				Version: "v2", Phase: pipeline.Failed, FailedStep: pipeline.StepBuildApp, Reason: "build failed",
				Created: now.Add(-time.Hour), Started: now.Add(-time.Hour), Finished: now.Add(-50 * time.Minute),
				Steps: []pipeline.Step{
					{Name: pipeline.StepVersion, Phase: pipeline.Succeeded, Started: now.Add(-time.Hour), Finished: now.Add(-time.Hour + time.Second), Log: "v2\n"},
					{Name: pipeline.StepBuildApp, Phase: pipeline.Failed, Started: now.Add(-time.Hour), Finished: now.Add(-50 * time.Minute), Log: "compiling\nmain.go:3: undefined: x\n", Error: "go build: exit status 1"},
					{Name: pipeline.StepTeardown, Phase: pipeline.Pending},
				}},
			{ID: "p1", App: hostile, Commit: "fedcba9876543210", Message: hostile, Author: hostile, Phase: pipeline.Running,
				StagingEnv: "staging-p1", StagingURL: "javascript:alert(1)",
				Created: now.Add(-2 * time.Minute), Started: now.Add(-2 * time.Minute),
				Steps: []pipeline.Step{{Name: pipeline.StepVersion, Phase: pipeline.Running, Started: now.Add(-time.Minute), Log: hostile}}},
		}},
		rollouts: &fakeRollouts{sts: []rollout.Status{{Env: "production", App: "web", StableVersion: "v1", CanaryVersion: "v2",
			Phase: rollout.Paused, Step: 2, Steps: 4, Weight: 20, Message: "paused for inspection", Started: now.Add(-5 * time.Minute),
			Analyses: []rollout.Run{{Name: "web-v2-1", Phase: "Successful"}}}}},
		events: events.New(clocktesting.NewFakeClock(now), nil),
	}
	runs := fakeRuns{{Name: "web-v2-1", Env: "production", App: "web", Version: "v2", Templates: []string{"error-rate"},
		Phase: analysis.PhaseSuccessful, StartedAt: now.Add(-4 * time.Minute),
		Metrics: []analysis.MetricResult{{Name: "error-rate", Phase: analysis.PhaseSuccessful, Measurements: []analysis.Measurement{
			{Phase: analysis.PhaseSuccessful, Value: "[0.01]", FinishedAt: now.Add(-3 * time.Minute)},
			{Phase: analysis.PhaseFailed, Value: "[0.2]", Reason: "over the limit", FinishedAt: now.Add(-2 * time.Minute)},
			{Phase: analysis.PhaseInconclusive, Value: "[]", Reason: "no data " + hostile, FinishedAt: now.Add(-time.Minute)},
		}}}}}
	envs := fakeEnvs{
		{Name: "staging-p1", Apps: []environment.AppStatus{{Name: "web", Version: "v2", URL: "http://127.0.0.1:9001", Replicas: []string{"127.0.0.1:9101"},
			Health: []runtime.ReplicaStatus{{Addr: "127.0.0.1:9101", State: runtime.ReplicaRunning, Ready: true, Restarts: 2}}}}},
		{Name: "production", Apps: []environment.AppStatus{{Name: "web", Version: "v1", URL: "http://127.0.0.1:9000"}}},
	}
	f.d = New(Options{Pipelines: f.pipelines, Environments: envs, Rollouts: f.rollouts, Runs: runs, Events: f.events,
		Now: func() time.Time { return now }})
	return f
}

// serve runs the dashboard behind a handler that plays auth.Protect's
// part: it attaches caller.
func serve(t *testing.T, d http.Handler, caller auth.Caller) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.ServeHTTP(w, r.WithContext(auth.WithCaller(r.Context(), caller)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string, http.Header) {
	t.Helper()
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestPages(t *testing.T) {
	f := newFixture()
	srv := serve(t, f.d, auth.Caller{Role: auth.Admin, Session: true, CSRF: "csrf-token-1"})
	tests := []struct {
		name   string
		path   string
		want   int
		has    []string
		hasNot []string
	}{
		{name: "pipelines", path: "/ui/", want: 200,
			has: []string{`href="/ui/pipelines/p2"`, "<code>0123456</code>", "Fix the thing", "by Ada", "✗</span> Failed", "build-app", "10m00s", `data-kinds="Pipeline"`}},
		{name: "filter by app", path: "/ui/?app=web", want: 200, has: []string{"1 of 2 pipelines shown"}, hasNot: []string{"fedcba9"}},
		{name: "filter by status", path: "/ui/?status=Running", want: 200, has: []string{"fedcba9"}, hasNot: []string{`href="/ui/pipelines/p2"`}},
		{name: "unknown status is no filter", path: "/ui/?status=%3Cb%3E", want: 200, has: []string{"2 of 2 pipelines shown"}, hasNot: []string{"<b>"}},
		{name: "oversized filter", path: "/ui/?app=" + strings.Repeat("a", 300), want: 400},
		{name: "failed pipeline", path: "/ui/pipelines/p2", want: 200,
			has: []string{"Failed at step build-app", "build failed", "main.go:3: undefined: x", "go build: exit status 1", `id="step-version"`, `data-phase="Succeeded"`}},
		{name: "running pipeline", path: "/ui/pipelines/p1", want: 200,
			has: []string{"Cancel pipeline", `name="csrf" value="csrf-token-1"`, `<details id="log-version" open>`, "#ZgotmplZ"}},
		{name: "missing pipeline", path: "/ui/pipelines/nope", want: 404},
		{name: "environments", path: "/ui/environments", want: 200,
			has: []string{"staging-p1", "production", "http://127.0.0.1:9001", "2 restarts", "✓</span> ready", `href="/ui/rollouts/production/web"`}},
		{name: "rollouts", path: "/ui/rollouts", want: 200, has: []string{`href="/ui/rollouts/production/web"`, "20%"}},
		{name: "rollout", path: "/ui/rollouts/production/web", want: 200,
			has: []string{`id="rollout-weight">20%`, "3 of 4", "Promote to next step", "<svg", "Traffic split over time", "Measurements of error-rate", "over the limit", `data-every="5"`}},
		{name: "unknown rollout", path: "/ui/rollouts/production/nope", want: 404},
		{name: "login", path: "/ui/login?why=failed&next=/ui/environments", want: 200, has: []string{"That token is not valid", `value="/ui/environments"`}},
		{name: "stylesheet", path: "/ui/static/style.css", want: 200, has: []string{".badge"}},
		{name: "script", path: "/ui/static/app.js", want: 200, has: []string{"EventSource"}},
		{name: "unknown page", path: "/ui/nope", want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, h := get(t, srv, tt.path)
			if status != tt.want {
				t.Fatalf("GET %s: %d, want %d\n%s", tt.path, status, tt.want, body)
			}
			if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
				t.Errorf("CSP %q", csp)
			}
			for _, s := range tt.has {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s: no %q in\n%s", tt.path, s, body)
				}
			}
			for _, s := range tt.hasNot {
				if strings.Contains(body, s) {
					t.Errorf("GET %s: %q present", tt.path, s)
				}
			}
			if strings.Contains(body, "<script>alert") {
				t.Errorf("GET %s: a hostile name came out as markup", tt.path)
			}
			if strings.HasPrefix(h.Get("Content-Type"), "text/html") && !strings.HasSuffix(tt.path, ".css") {
				assertNoInline(t, body)
			}
		})
	}
}

// assertNoInline checks a page needs no inline script or style, which
// the CSP forbids.
func assertNoInline(t *testing.T, body string) {
	t.Helper()
	for _, re := range []*regexp.Regexp{regexp.MustCompile(`<script>`), regexp.MustCompile(`\sstyle="`), regexp.MustCompile(`\son[a-z]+="`), regexp.MustCompile(`<style`)} {
		if re.MatchString(body) {
			t.Errorf("inline %s in a page", re)
		}
	}
}

func TestReadRoleSeesNoButtons(t *testing.T) {
	f := newFixture()
	srv := serve(t, f.d, auth.Caller{Role: auth.Read, Session: true, CSRF: "x"})
	_, body, _ := get(t, srv, "/ui/rollouts/production/web")
	if strings.Contains(body, "Promote to next step") || !strings.Contains(body, "Read-only") {
		t.Fatal("a read session sees the buttons, or no read-only note")
	}
	_, body, _ = get(t, srv, "/ui/pipelines/p1")
	if strings.Contains(body, "Cancel pipeline") {
		t.Fatal("a read session sees the cancel button")
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name       string
		caller     auth.Caller
		path       string
		form       url.Values
		wantTo     string
		wantAction string
	}{
		{name: "promote", caller: admin(), path: "/ui/rollouts/production/web/promote", wantTo: "/ui/rollouts/production/web?done=promote", wantAction: "promote production/web"},
		{name: "abort with a hostile reason", caller: admin(), path: "/ui/rollouts/production/web/abort", form: url.Values{"reason": {"bad\nTrailer: x"}},
			wantTo: "/ui/rollouts/production/web?done=abort", wantAction: "abort:bad Trailer: x production/web"},
		{name: "retry", caller: admin(), path: "/ui/rollouts/production/web/retry", wantTo: "/ui/rollouts/production/web?done=retry", wantAction: "retry production/web"},
		{name: "read role", caller: auth.Caller{Role: auth.Read, Session: true}, path: "/ui/rollouts/production/web/promote", wantTo: "/ui/rollouts/production/web?err=role"},
		{name: "bearer admin cannot post forms", caller: auth.Caller{Role: auth.Admin}, path: "/ui/rollouts/production/web/retry", wantTo: "/ui/rollouts/production/web?err=role"},
		{name: "cancel", caller: admin(), path: "/ui/pipelines/p1/cancel", wantTo: "/ui/pipelines/p1?done=cancel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			srv := serve(t, f.d, tt.caller)
			c := *srv.Client()
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.PostForm(srv.URL+tt.path, tt.form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.wantTo {
				t.Fatalf("POST %s: %d to %q, want 303 to %q", tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.wantTo)
			}
			got := strings.Join(f.rollouts.actions, ";")
			if got != tt.wantAction {
				t.Fatalf("actions %q, want %q", got, tt.wantAction)
			}
		})
	}
}

func TestActionErrorIsAFixedMessage(t *testing.T) {
	f := newFixture()
	f.rollouts.sts[0].Phase = rollout.Progressing
	srv := serve(t, f.d, admin())
	c := *srv.Client()
	resp, err := c.PostForm(srv.URL+"/ui/rollouts/production/web/promote", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "not in a state that allows that") {
		t.Fatalf("no message after a refused promote:\n%s", b)
	}
	// A crafted link shows no text of its own.
	_, body, _ := get(t, srv, "/ui/rollouts/production/web?err=%3Cb%3Eowned")
	if strings.Contains(body, "owned") {
		t.Fatal("the flash echoes the query")
	}
}

func admin() auth.Caller { return auth.Caller{Role: auth.Admin, Session: true, CSRF: "c"} }

func TestTrafficHistory(t *testing.T) {
	f := newFixture()
	clock := now
	f.d.o.Now = func() time.Time { return clock }
	srv := serve(t, f.d, admin())
	for i, w := range []int{10, 10, 20, 50} {
		f.rollouts.mu.Lock()
		f.rollouts.sts[0].Weight, f.rollouts.sts[0].Step = w, i
		f.rollouts.mu.Unlock()
		clock = now.Add(time.Duration(i) * time.Minute)
		get(t, srv, "/ui/rollouts/production/web")
	}
	pts, _ := f.d.history.get("production", "web")
	if len(pts) != 4 { // steps differ each time, so four changes
		t.Fatalf("%d points, want 4: %+v", len(pts), pts)
	}
	c := trafficChart("t", pts, clock.Add(time.Minute))
	if len(c.Marks) != 4 || !strings.Contains(c.Marks[3].Label, "canary 50%, stable 50%") {
		t.Fatalf("marks %+v", c.Marks)
	}
	assertSVG(t, f.d, c)
}

func TestHistoryBounded(t *testing.T) {
	h := newHistory()
	for i := range maxPoints + 50 {
		h.sample([]rollout.Status{{Env: "e", App: "a", Weight: i % 100, Step: i}}, now.Add(time.Duration(i)*time.Second))
	}
	for i := range maxSeries + 5 {
		h.sample([]rollout.Status{{Env: "e", App: string(rune('a'+i%26)) + strings.Repeat("x", i)}}, now.Add(time.Hour+time.Duration(i)*time.Second))
	}
	if len(h.m) > maxSeries {
		t.Fatalf("%d series kept", len(h.m))
	}
	for _, s := range h.m {
		if len(s.points) > maxPoints {
			t.Fatalf("%d points kept", len(s.points))
		}
	}
}

func TestMetricChart(t *testing.T) {
	m := metricView{Name: "error-rate", SuccessCondition: "result[0] < 0.05", FailureCondition: "0.1 <= result",
		Measurements: []measurementView{
			{Phase: "Successful", Value: "[0.01]"},
			{Phase: "Failed", Value: "[0.2]"},
			{Phase: "Inconclusive", Value: "[]"},
			{Phase: "Error", Value: "[0.04, 0.5]"},
			{Phase: "Inconclusive", Value: "[0.03]", NotCounted: true},
		}}
	c := metricChart("m", m)
	if len(c.Marks) != 4 {
		t.Fatalf("%d marks, want 4 (an empty value draws nothing)", len(c.Marks))
	}
	wantShapes := []string{"circle", "cross", "triangle", "ring"}
	for i, mk := range c.Marks {
		if mk.Shape != wantShapes[i] {
			t.Errorf("mark %d shape %s, want %s", i, mk.Shape, wantShapes[i])
		}
	}
	if len(c.HLines) != 2 || c.HLines[0].Label != "success if < 0.05" || c.HLines[1].Label != "failure if >= 0.1" {
		t.Fatalf("thresholds %+v", c.HLines)
	}
	// Lower values are drawn lower: y grows downwards.
	if !(y(t, c.Marks[0].Y) > y(t, c.HLines[0].Y) && y(t, c.HLines[0].Y) > y(t, c.HLines[1].Y) && y(t, c.HLines[1].Y) > y(t, c.Marks[1].Y)) {
		t.Fatalf("0.01 < 0.05 < 0.1 < 0.2 not in order: marks %+v lines %+v", c.Marks, c.HLines)
	}
	assertSVG(t, newFixture().d, c)
	if c := metricChart("e", metricView{Name: "x"}); c.Empty == "" {
		t.Fatal("a chart without measurements is not marked empty")
	}
}

func y(t *testing.T, s string) float64 {
	t.Helper()
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// assertSVG renders c and checks it is well-formed XML with the shapes
// and a title.
func assertSVG(t *testing.T, d *Dashboard, c chart) {
	t.Helper()
	var b strings.Builder
	if err := d.pages.ExecuteTemplate(&b, "chart", c); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i, j := strings.Index(out, "<svg"), strings.Index(out, "</svg>")
	if i < 0 || j < 0 {
		t.Fatalf("no svg in %s", out)
	}
	dec := xml.NewDecoder(strings.NewReader(out[i : j+len("</svg>")]))
	elems := map[string]int{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not well-formed: %v\n%s", err, out)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elems[se.Name.Local]++
		}
	}
	if elems["title"] == 0 || elems["polyline"] == 0 || elems["g"] != len(c.Marks) {
		t.Fatalf("svg elements %v for %d marks", elems, len(c.Marks))
	}
}

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		cond string
		want threshold
		ok   bool
	}{
		{"result[0] < 0.05", threshold{"<", 0.05}, true},
		{"result <= 1e-3", threshold{"<=", 0.001}, true},
		{" result[0]>=99.5 ", threshold{">=", 99.5}, true},
		{"0.95 < result[0]", threshold{">", 0.95}, true},
		{"result[0] == 0", threshold{"==", 0}, true},
		{"len(result) == 0 || result[0] < 0.05", threshold{}, false},
		{"result[1] < 3", threshold{}, false},
		{"isNaN(result[0])", threshold{}, false},
		{"", threshold{}, false},
		{strings.Repeat("result[0] < 1 ", 100), threshold{}, false},
	}
	for _, tt := range tests {
		got, ok := parseThreshold(tt.cond)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseThreshold(%q) = %v, %v; want %v, %v", tt.cond, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseThreshold(f *testing.F) {
	f.Add("result[0] < 0.05")
	f.Add("0.1 >= result")
	f.Fuzz(func(t *testing.T, s string) {
		parseThreshold(s)
		firstValue(s)
	})
}

// Run samples at events and on its ticker; once the event log is closed
// (the server stops) its wake channel never waits again, and Run must
// not spin on it until its context ends.
func TestRunAfterTheEventLogCloses(t *testing.T) {
	f := newFixture()
	f.events.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.d.Run(ctx)
	}()
	time.Sleep(300 * time.Millisecond) // a spinning loop lists thousands of times meanwhile
	cancel()
	<-done
	f.rollouts.mu.Lock()
	defer f.rollouts.mu.Unlock()
	if f.rollouts.lists > 10 {
		t.Fatalf("Run listed the rollouts %d times in 0.3 s after the log closed: it spins", f.rollouts.lists)
	}
}
