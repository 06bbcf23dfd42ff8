package browser_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/test/harness"
)

// Waits in the browser; each is bounded.
const (
	pageWait     = 30 * time.Second
	pipelineWait = 6 * time.Minute
	rolloutWait  = 4 * time.Minute
)

// The widths of the screenshots.
var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"phone", 390, 844, true},
	{"desktop", 1280, 800, false},
}

// chromium returns the browser's path, or skips the test (fails it on
// CI, where scripts/browser-deps.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; scripts/browser-deps.sh installs Debian's chromium package")
	}
	t.Skip("chromium is not installed (scripts/browser-deps.sh, or apt-get install chromium)")
	return ""
}

// startRunway starts a real Runway for t, closed at its end.
func startRunway(ctx context.Context, t *testing.T) *harness.Harness {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test")
	}
	logBuf := &logbuf.Buffer{}
	h, err := harness.Start(ctx, harness.Options{Examples: "../../examples", Dir: t.TempDir(), Log: logBuf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing runway: %v", err)
		}
		if t.Failed() {
			t.Logf("server log tail:\n%s", harness.TailLines(logBuf.String(), 80))
		}
	})
	return h
}

// newBrowser starts a headless Chromium, stopped at t's end, and returns
// a tab's context.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// run runs actions in the tab of ctx, bounded by limit.
func run(t *testing.T, ctx context.Context, limit time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := chromedp.Do(rctx, steps...); err != nil {
		var loc string
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		loc, _ = chromedp.Run(lctx, chromedp.Location())
		state, _ := chromedp.Run(lctx, chromedp.Evaluate[string](`(document.getElementById('live-state') || {}).textContent || ''`))
		lcancel()
		t.Fatalf("%s (at %s, %q): %v", what, loc, state, err)
	}
}

// eval evaluates a JavaScript expression in the tab.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, pageWait)
	defer cancel()
	v, err := chromedp.Run(rctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate in the tab until it holds.
// A poll that a navigation (a form's post) interrupts starts again, at
// most a few times.
func waitFor(t *testing.T, ctx context.Context, limit time.Duration, what, predicate string) {
	t.Helper()
	run(t, ctx, limit+5*time.Second, "waiting for "+what,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			var err error
			for range 5 {
				_, err = chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(limit))(ctx, tg)
				if err == nil || !strings.Contains(err.Error(), "navigated or closed") {
					return err
				}
				select {
				case <-ctx.Done():
					return err
				case <-time.After(500 * time.Millisecond):
				}
			}
			return err
		}))
}

// login logs the tab in with token through the login form.
func login(t *testing.T, ctx context.Context, h *harness.Harness, token string) {
	t.Helper()
	run(t, ctx, pageWait, "logging in",
		chromedp.Navigate(h.APIURL()+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("main[data-live]")),
	)
}

// markPage sets a flag on the loaded page: it is gone after a reload.
func markPage(t *testing.T, ctx context.Context) {
	t.Helper()
	eval[bool](t, ctx, `(window.__noReload = true)`)
}

func assertNotReloaded(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if !eval[bool](t, ctx, `window.__noReload === true`) {
		t.Fatalf("%s: the page was reloaded; it should have updated in place", what)
	}
}

// screenshotDir is where screenshots go: the test's artifact directory
// (go test -artifacts keeps it), RUNWAY_SCREENSHOTS when set.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("RUNWAY_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// screenshots takes the current page at every viewport as
// <name>-<viewport>.png, copied to RUNWAY_SCREENSHOTS_DIR when set.
func screenshots(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := screenshotDir(t)
	for _, vp := range viewports {
		var opts []chromedp.EmulateViewportOption
		if vp.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
		}
		run(t, ctx, pageWait, "resizing to "+vp.name, chromedp.EmulateViewport(vp.width, vp.height, opts...),
			chromedp.Func(func(context.Context, *chromedp.Target) error { time.Sleep(300 * time.Millisecond); return nil }))
		rctx, cancel := context.WithTimeout(ctx, pageWait)
		png, err := chromedp.Run(rctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			t.Fatalf("screenshot of %s at %s: %v", name, vp.name, err)
		}
		file := fmt.Sprintf("dashboard-%s-%s.png", name, vp.name)
		writeFile(t, filepath.Join(dir, file), png)
		if extra := os.Getenv("RUNWAY_SCREENSHOTS_DIR"); extra != "" {
			writeFile(t, filepath.Join(extra, file), png)
		}
		// Nothing may stick out sideways at either width.
		if over := eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
			t.Errorf("%s at %s width: the page scrolls sideways", name, vp.name)
		}
	}
	run(t, ctx, pageWait, "resetting the viewport", chromedp.EmulateReset())
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// TestRefusedWithoutToken: the API and the pages refuse a caller with
// neither a token nor a session, also in the browser.
func TestRefusedWithoutToken(t *testing.T) {
	path := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h := startRunway(ctx, t)
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path string
		want int
	}{{"/api/v1/pipelines", 401}, {"/api/v1/events", 401}, {"/ui/", 303}, {"/ui/environments", 303}} {
		resp, err := client.Get(h.APIURL() + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s without a token: %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
	b := newBrowser(t, path)
	run(t, b, pageWait, "opening the dashboard without a session",
		chromedp.Navigate(h.APIURL()+"/ui/environments"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := eval[string](t, b, `location.pathname + location.search`); !strings.HasPrefix(loc, "/ui/login?next=%2Fui%2Fenvironments") {
		t.Fatalf("without a session the browser is at %s, want the login page", loc)
	}
	run(t, b, pageWait, "a wrong token",
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-0123456789"),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS(".flash.bad")))
	// The API, read from the page's origin, refuses it too.
	if status := eval[float64](t, b, `fetch('/api/v1/pipelines').then(r => r.status)`); status != 401 {
		t.Fatalf("fetch of the API without a session: %v, want 401", status)
	}
	login(t, b, h, h.Token())
	if status := eval[float64](t, b, `fetch('/api/v1/pipelines').then(r => r.status)`); status != 200 {
		t.Fatalf("fetch of the API with a session: %v, want 200", status)
	}
	screenshots(t, b, "environments-empty")
}

// TestDashboard runs a pipeline and then a canary with pauses, watched in
// the browser: the steps turn to success without a reload, the rollout
// page follows the weight and draws the metric, promote promotes.
func TestDashboard(t *testing.T) {
	path := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	h := startRunway(ctx, t)
	b := newBrowser(t, path)
	login(t, b, h, h.Token())

	// A first version, watched on its pipeline page from its first step.
	sha, err := h.CommitChange(ctx, "", "first version\n\nwatched from the dashboard")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.Push(ctx, "main", sha, "first version")
	if err != nil || resp.Pipeline == "" {
		t.Fatalf("push: %v %+v", err, resp)
	}
	run(t, b, pageWait, "opening the pipeline page",
		chromedp.Navigate(h.APIURL()+"/ui/pipelines/"+resp.Pipeline), chromedp.WaitVisible(chromedp.CSS("ol.timeline")))
	markPage(t, b)
	before := eval[float64](t, b, `document.querySelectorAll('li.step[data-phase="Succeeded"]').length`)
	p, err := h.WaitPipeline(ctx, resp.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("first pipeline %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
	}
	succeeded := 0
	for _, s := range p.Steps {
		if s.Phase == pipeline.Succeeded {
			succeeded++
		}
	}
	waitFor(t, b, pageWait, "every step to show success", fmt.Sprintf(`document.querySelectorAll('li.step[data-phase="Succeeded"]').length === %d`, succeeded))
	assertNotReloaded(t, b, "pipeline page")
	if int(before) >= succeeded {
		t.Fatalf("%v steps had succeeded when the page opened, %d at the end: nothing changed live", before, succeeded)
	}
	t.Logf("pipeline page: %v then %d steps succeeded, without a reload", before, succeeded)
	screenshots(t, b, "pipeline")

	run(t, b, pageWait, "opening the pipelines list", chromedp.Navigate(h.APIURL()+"/ui/"), chromedp.WaitVisible(chromedp.CSS("table.pipelines")))
	screenshots(t, b, "pipelines")

	// A canary that pauses at 20% and 50%, analysed from its first step.
	spec := canarySpec(t, `    analysis:
      templates: [{templateName: success-rate}]
      startingStep: 1
    steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 50
      - pause: {}
`)
	sha = commitCanary(ctx, t, h, "json-pong", spec, successRateTemplate("interval: 1s\n      inconclusiveLimit: 1000"))
	tr := h.StartTraffic(ctx)
	t.Cleanup(func() { tr.Stop() })
	resp, err = h.Push(ctx, "main", sha, "canary watched from the dashboard")
	if err != nil || resp.Pipeline == "" {
		t.Fatalf("push: %v %+v", err, resp)
	}
	rolloutURL := h.APIURL() + "/ui/rollouts/production/" + harness.AppName
	// The page exists once the rollout does.
	deadline := time.Now().Add(rolloutWait)
	for {
		if st, body, _ := h.API(ctx, "GET", "/api/v1/rollouts", nil); st == 200 && strings.Contains(body, `"app": "`+harness.AppName+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no rollout started")
		}
		time.Sleep(500 * time.Millisecond)
	}
	run(t, b, pageWait, "opening the rollout page", chromedp.Navigate(rolloutURL), chromedp.WaitVisible(chromedp.CSS("#rollout-weight")))
	markPage(t, b)
	waitFor(t, b, rolloutWait, "the canary paused at 20%",
		`(() => { const s = document.querySelector('#rollout-status'); return s && s.dataset.weight === '20' && s.dataset.phase === 'Paused' && !document.querySelector('#promote').disabled; })()`)
	waitFor(t, b, rolloutWait, "a measurement drawn in the metric chart",
		`document.querySelectorAll('.metric svg g.mark').length > 0`)
	// The threshold line needs the run record to carry the metric's
	// successCondition; until the analysis package records it, the page
	// cannot draw it.
	if !eval[bool](t, b, `document.querySelector('.metric svg .thr-ok') !== null`) {
		t.Log("no success threshold drawn: the analysis run record carries no successCondition")
	}
	screenshots(t, b, "rollout")
	run(t, b, pageWait, "clicking promote", chromedp.Click(chromedp.CSS("#promote")))
	waitFor(t, b, rolloutWait, "the canary paused at 50%",
		`(() => { const s = document.querySelector('#rollout-status'); return s && s.dataset.weight === '50' && s.dataset.phase === 'Paused'; })()`)
	if flash := eval[string](t, b, `(document.querySelector('.flash') || {}).textContent || ''`); !strings.Contains(flash, "Promote requested") {
		t.Errorf("after promote the page says %q", flash)
	}
	markPage(t, b) // promote posted a form: the page after it is a new one
	waitFor(t, b, rolloutWait, "the traffic chart to show the step to 50%",
		`document.querySelectorAll('svg[aria-labelledby^="traffic"] g.mark').length >= 2`)
	assertNotReloaded(t, b, "rollout page")

	run(t, b, pageWait, "opening the environments", chromedp.Navigate(h.APIURL()+"/ui/environments"), chromedp.WaitVisible(chromedp.CSS("section.env")))
	screenshots(t, b, "environments")

	// Finish the canary from its page, so the pipeline ends.
	run(t, b, pageWait, "promoting fully", chromedp.Navigate(rolloutURL), chromedp.WaitVisible(chromedp.CSS("#promote-full")), chromedp.Click(chromedp.CSS("#promote-full")))
	wctx, wcancel := context.WithTimeout(ctx, pipelineWait)
	defer wcancel()
	if p, err := h.WaitPipeline(wctx, resp.Pipeline, nil); err != nil || p.Phase != pipeline.Succeeded {
		t.Fatalf("the canary's pipeline after promote: %v %+v", err, p)
	}
}

func canarySpec(t *testing.T, strategy string) string {
	t.Helper()
	base, err := os.ReadFile("../../examples/homelabping/runway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(base)
	i := strings.Index(s, "strategy:")
	if i < 0 {
		t.Fatal("examples/homelabping/runway.yaml has no strategy")
	}
	return s[:i] + "strategy:\n  canary:\n" + strategy + "analysisTemplates:\n  - analysis/success-rate.yaml\n"
}

// successRateTemplate is the example's error-ratio metric, measured by
// the embedded PromQL engine, with the given scheduling fields.
func successRateTemplate(fields string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
    - name: app
    - name: env
    - name: version
  metrics:
    - name: error-ratio
      %s
      successCondition: result[0] <= 0.2
      provider:
        prometheus:
          query: '(sum(rate(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}",code=~"5.."}[10s])) or vector(0)) / sum(rate(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}"}[10s]))'
`, fields)
}

// commitCanary commits an overlay of examples/changes with spec and
// template to the app's repository.
func commitCanary(ctx context.Context, t *testing.T, h *harness.Harness, overlay, spec, template string) string {
	t.Helper()
	files := fstest.MapFS{
		"runway.yaml":                {Data: []byte(spec)},
		"analysis/success-rate.yaml": {Data: []byte(template)},
	}
	root := filepath.Join("../../examples/changes", overlay)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data, Mode: 0o644}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sha, err := gitops.CommitDir(ctx, h.AppURL, "main", files, "canary scenario "+overlay)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}
