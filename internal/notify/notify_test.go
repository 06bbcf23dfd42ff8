package notify

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
)

var started = time.Date(2026, 12, 1, 20, 50, 0, 0, time.UTC)

// failed is a pipeline that failed at a step.
func failed(id, app string) pipeline.Pipeline {
	return pipeline.Pipeline{
		ID: id, App: app, Repo: "acme/" + app, Branch: "main", Commit: "0123456789abcdef0123456789abcdef01234567",
		Message: "Fix the <login> page\n\nLonger body.", Author: "Ada <ada@example.com>", Version: "1.4.2",
		Phase: pipeline.Failed, FailedStep: pipeline.StepStagingTests, Reason: "staging-functional-tests: 2 of 14 failed",
		Started: started, Finished: started.Add(3 * time.Minute),
	}
}

func succeeded(id, app string) pipeline.Pipeline {
	p := failed(id, app)
	p.Phase, p.FailedStep, p.Reason = pipeline.Succeeded, "", ""
	return p
}

func TestJSONPayload(t *testing.T) {
	s := newSink(t, nil)
	dir := t.TempDir()
	urlFile, tokenFile := filepath.Join(dir, "url"), filepath.Join(dir, "token")
	if err := os.WriteFile(urlFile, []byte(s.srv.URL+"/hook?token=s3cr3t-query\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("Bearer tok-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	w := start(t, Config{Receivers: []Receiver{{
		Name: "hook", URLFile: urlFile,
		Headers: []Header{{Name: "Authorization", ValueFile: tokenFile}, {Name: "X-Team", Value: "web"}},
	}}}, func(o *Options) {
		o.AddSecret = func(s ...string) { secrets = append(secrets, s...) }
		o.Link = func(kind, name string) string {
			return "https://runway.example/ui/" + strings.ToLower(kind) + "s/" + name
		}
	})
	if !slices.Contains(secrets, s.srv.URL+"/hook?token=s3cr3t-query") || !slices.Contains(secrets, "Bearer tok-0123456789") {
		t.Errorf("secrets given to AddSecret: %q", secrets)
	}
	w.rec.Normal(events.Pipeline, "p1", "Started", "web at commit 0123456789ab") // not notified
	w.pipelineEnd(failed("p1", "web"))

	r := s.next(t)
	if got := r.header.Get("Authorization"); got != "Bearer tok-0123456789" {
		t.Errorf("Authorization = %q", got)
	}
	if r.header.Get("X-Team") != "web" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	n := r.notification(t)
	want := Notification{
		Kind: Kind, ID: "pipeline/p1/pipeline.failed", Event: PipelineFailed, Severity: "warning",
		Title: "web 1.4.2: pipeline failed at staging-functional-tests", App: "web", Version: "1.4.2",
		Message: "staging-functional-tests: 2 of 14 failed", URL: "https://runway.example/ui/pipelines/p1",
		Pipeline: &PipelineInfo{
			ID: "p1", Phase: "Failed", Repo: "acme/web", Branch: "main", Commit: "0123456789abcdef0123456789abcdef01234567",
			CommitMessage: "Fix the <login> page", Author: "Ada <ada@example.com>", FailedStep: pipeline.StepStagingTests,
			Reason: "staging-functional-tests: 2 of 14 failed", Started: started, Finished: started.Add(3 * time.Minute),
		},
	}
	n.Time = time.Time{}
	if a, b := mustJSON(t, n), mustJSON(t, want); a != b {
		t.Errorf("notification\n got %s\nwant %s", a, b)
	}
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil || raw["time"] == "" || raw["kind"] != "runway.notification/v1" {
		t.Errorf("raw body %s: %v", r.body, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSlackPayload(t *testing.T) {
	s := newSink(t, nil)
	w := start(t, Config{Receivers: []Receiver{{Name: "slack", URL: s.srv.URL, Format: FormatSlack}}}, func(o *Options) {
		o.Link = func(kind, name string) string { return "https://runway.example/ui/x?a=1&b=2" }
	})
	w.pipelineEnd(failed("p1", "web"))
	var m struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Elements []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(s.next(t).body, &m); err != nil {
		t.Fatal(err)
	}
	if m.Text != "web 1.4.2: pipeline failed at staging-functional-tests: staging-functional-tests: 2 of 14 failed" {
		t.Errorf("fallback text %q", m.Text)
	}
	if len(m.Blocks) != 2 || m.Blocks[0].Type != "section" || m.Blocks[0].Text == nil || m.Blocks[1].Type != "context" {
		t.Fatalf("blocks %+v", m.Blocks)
	}
	head := m.Blocks[0].Text
	if head.Type != "mrkdwn" || !strings.HasPrefix(head.Text, ":x: *<https://runway.example/ui/x?a=1&amp;b=2|web 1.4.2: pipeline failed") {
		t.Errorf("section %+v", head)
	}
	ctx := m.Blocks[1].Elements
	if len(ctx) != 2 || ctx[0].Text != "commit `0123456789ab` by Ada &lt;ada@example.com&gt;: Fix the &lt;login&gt; page" || ctx[1].Text != "pipeline p1 · Failed" {
		t.Errorf("context %+v", ctx)
	}
}

// Each receiver gets what its apps and events ask for, in order; a
// pipeline end recorded twice is notified once; a rollout event carries
// the version of the pipeline that rolls it out.
func TestFilters(t *testing.T) {
	all, web, aborts := newSink(t, nil), newSink(t, nil), newSink(t, nil)
	w := start(t, Config{Receivers: []Receiver{
		{Name: "all", URL: all.srv.URL},
		{Name: "web", URL: web.srv.URL, Apps: []string{"web"}},
		{Name: "aborts", URL: aborts.srv.URL, Events: []string{RolloutAborted, PipelineCancelled}},
	}}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	w.pipelineEnd(succeeded("p2", "api"))
	cancelled := succeeded("p3", "api")
	cancelled.Phase, cancelled.Reason = pipeline.Cancelled, "cancelled: by ada"
	w.pipelineEnd(cancelled)
	w.rec.Normal(events.Pipeline, "p3", string(pipeline.Cancelled), "again") // the same end twice
	w.rec.Normal(events.Rollout, "production/api", "StepCompleted", "step 1/3")
	w.rec.Normal(events.Rollout, "production/api", "Paused", "step 2/3: analysis inconclusive")
	rolling := succeeded("p4", "web")
	rolling.Phase, rolling.Promoting, rolling.Version, rolling.Finished = pipeline.Running, true, "2.0.0", time.Time{}
	w.pipes.add(rolling)
	w.rec.Warning(events.Rollout, "production/web", "Aborted", "canary 2.0.0 aborted: error rate")

	ids := func(s *sink, n int) []string {
		var out []string
		for range n {
			r := s.next(t)
			out = append(out, r.notification(t).ID)
		}
		return out
	}
	want := map[*sink][]string{
		all:    {"pipeline/p1/pipeline.succeeded", "pipeline/p2/pipeline.succeeded", "pipeline/p3/pipeline.cancelled", "rollout/production/api/rollout.paused/6", "rollout/production/web/rollout.aborted/7"},
		web:    {"pipeline/p1/pipeline.succeeded", "rollout/production/web/rollout.aborted/7"},
		aborts: {"pipeline/p3/pipeline.cancelled", "rollout/production/web/rollout.aborted/7"},
	}
	for s, ids0 := range want {
		if got := ids(s, len(ids0)); !slices.Equal(got, ids0) {
			t.Errorf("got %q, want %q", got, ids0)
		}
	}
	// The last notification of each was the newest event: nothing else
	// can still come.
	for s := range want {
		s.none(t)
	}
	w.pipelineEnd(succeeded("p5", "web"))
	r := web.next(t).notification(t)
	if r.ID != "pipeline/p5/pipeline.succeeded" {
		t.Errorf("after the rollout: %s", r.ID)
	}
}

func TestRolloutCarriesThePipeline(t *testing.T) {
	s := newSink(t, nil)
	w := start(t, Config{Receivers: []Receiver{{Name: "all", URL: s.srv.URL}}}, nil)
	rolling := succeeded("p4", "web")
	rolling.Phase, rolling.Promoting, rolling.Version, rolling.Finished = pipeline.Running, true, "2.0.0", time.Time{}
	w.pipes.add(succeeded("p3", "web")) // older, not promoting
	w.pipes.add(rolling)
	w.rec.Normal(events.Rollout, "production/web", "Promoted", "canary 2.0.0 promoted")
	n := s.next(t).notification(t)
	if n.Event != RolloutPromoted || n.Env != "production" || n.App != "web" || n.Version != "2.0.0" ||
		n.Pipeline == nil || n.Pipeline.ID != "p4" || n.Title != "web 2.0.0: rollout promoted in production" || n.Severity != "info" {
		t.Errorf("notification %+v", n)
	}
}

// 429 (with Retry-After) and 500 are retried after backoff waits stepped
// through on the fake clock; the body is the same each time.
func TestRetriesThenSuccess(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter) int {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "3600") // bounded by MaxBackoff
			return http.StatusTooManyRequests
		case 2, 3:
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	w := start(t, Config{Receivers: []Receiver{{Name: "flaky", URL: s.srv.URL}}}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	var bodies []string
	w.stepUntil(t, func() bool {
		select {
		case r := <-s.got:
			bodies = append(bodies, string(r.body))
		default:
		}
		return len(bodies) == 4
	})
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("retried body differs:\n%s\n%s", b, bodies[0])
		}
	}
	waitLog(t, w, "notification sent")
	if got := strings.Count(w.log.String(), "retrying"); got != 3 {
		t.Errorf("%d retries logged, want 3:\n%s", got, w.log)
	}
}

// waitLog waits until the log holds s.
func waitLog(t *testing.T, w *world, s string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(w.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, w.log)
		}
		time.Sleep(time.Millisecond)
	}
}

// A 4xx other than 408 and 429 is not retried: the next request is the
// next notification. Retries stop after MaxAttempts.
func TestGivesUp(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			return http.StatusBadRequest
		}
		return http.StatusBadGateway
	})
	w := start(t, Config{Receivers: []Receiver{{Name: "picky", URL: s.srv.URL}}}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	w.pipelineEnd(succeeded("p2", "web"))
	if id := s.next(t).notification(t).ID; id != "pipeline/p1/pipeline.succeeded" {
		t.Fatalf("first request %s", id)
	}
	var got []string
	w.stepUntil(t, func() bool {
		select {
		case r := <-s.got:
			got = append(got, r.notification(t).ID)
		default:
		}
		return strings.Contains(w.log.String(), "giving up")
	})
	if len(got) != MaxAttempts || slices.ContainsFunc(got, func(id string) bool { return id != "pipeline/p2/pipeline.succeeded" }) {
		t.Errorf("after the 400: %q", got)
	}
	if !strings.Contains(w.log.String(), "not retried") || !strings.Contains(w.log.String(), "status 400 answer") {
		t.Errorf("log:\n%s", w.log)
	}
}

// A receiver that never answers holds up neither the event log nor the
// other receivers.
func TestHangingReceiverBlocksNothing(t *testing.T) {
	hang, fine := newSink(t, nil), newSink(t, nil)
	hang.block = make(chan struct{})
	t.Cleanup(func() { close(hang.block) })
	w := start(t, Config{Receivers: []Receiver{
		{Name: "hang", URL: hang.srv.URL, Timeout: durationOf(MaxTimeout)},
		{Name: "fine", URL: fine.srv.URL},
	}}, nil)
	const count = 20
	for i := range count {
		w.pipelineEnd(succeeded("p"+string(rune('a'+i)), "web"))
	}
	hang.next(t)
	for range count {
		fine.next(t)
	}
	if got, _ := w.rec.Since(0, 0); len(got) != count {
		t.Errorf("%d events recorded, want %d", len(got), count)
	}
}

// A full queue drops its oldest notification, counts and logs it.
func TestQueueOverflow(t *testing.T) {
	s := newSink(t, nil)
	s.block = make(chan struct{})
	w := start(t, Config{Receivers: []Receiver{{Name: "slow", URL: s.srv.URL}}}, func(o *Options) { o.QueueSize = 2 })
	w.pipelineEnd(succeeded("p0", "web"))
	s.next(t) // p0 in flight
	for i := 1; i <= 9; i++ {
		w.pipelineEnd(succeeded("p"+string(rune('0'+i)), "web"))
	}
	r := w.receiverNamed(t, "slow")
	var dropped uint64
	w.stepUntil(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		dropped = r.dropped
		return dropped == 7
	})
	close(s.block)
	for _, want := range []string{"p8", "p9"} {
		if id := s.next(t).notification(t).Pipeline.ID; id != want {
			t.Errorf("after the overflow got %s, want %s", id, want)
		}
	}
	if !strings.Contains(w.log.String(), "notification queue full") || !strings.Contains(w.log.String(), "dropped=7") {
		t.Errorf("log:\n%s", w.log)
	}
}

// The URL (a secret, as Slack's are) appears in no log line, even in a
// connection error, which names it.
func TestURLNotLogged(t *testing.T) {
	s := newSink(t, nil)
	dead := s.srv.URL + "/services/T000/B000/XXXXsecretXXXX?sig=abcdef123456"
	s.srv.Close()
	w := start(t, Config{Receivers: []Receiver{{Name: "gone", URL: dead, Format: FormatSlack}}}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	w.stepUntil(t, func() bool { return strings.Contains(w.log.String(), "giving up") })
	out := w.log.String()
	if strings.Contains(out, "XXXXsecretXXXX") || strings.Contains(out, "abcdef123456") {
		t.Errorf("the URL was logged:\n%s", out)
	}
	if !strings.Contains(out, "receiver=gone") {
		t.Errorf("log:\n%s", out)
	}
}

// A redirect to another host is not followed; one to the same host is.
func TestRedirects(t *testing.T) {
	other := newSink(t, nil)
	var hops atomic.Int32
	same := newSink(t, func(n int, w http.ResponseWriter) int {
		hops.Add(1)
		switch n {
		case 1:
			w.Header().Set("Location", "/moved")
			return http.StatusTemporaryRedirect
		case 2:
			return http.StatusOK
		}
		w.Header().Set("Location", other.srv.URL)
		return http.StatusTemporaryRedirect
	})
	w := start(t, Config{Receivers: []Receiver{{Name: "moved", URL: same.srv.URL}}}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	first, second := same.next(t), same.next(t)
	if string(first.body) != string(second.body) {
		t.Errorf("the redirect lost the body: %q", second.body)
	}
	w.pipelineEnd(succeeded("p2", "web"))
	same.next(t)
	waitLog(t, w, "not retried")
	other.none(t)
	if hops.Load() != 3 {
		t.Errorf("%d requests, want 3", hops.Load())
	}
}

// Run returns when its context ends, with a request in flight and more
// queued and retries waiting.
func TestRunEndsOnCancel(t *testing.T) {
	hang, failing := newSink(t, nil), newSink(t, func(int, http.ResponseWriter) int { return 500 })
	hang.block = make(chan struct{})
	t.Cleanup(func() { close(hang.block) })
	w := start(t, Config{Receivers: []Receiver{{Name: "hang", URL: hang.srv.URL}, {Name: "failing", URL: failing.srv.URL}}}, nil)
	for _, id := range []string{"p1", "p2", "p3"} {
		w.pipelineEnd(succeeded(id, "web"))
	}
	hang.next(t)
	failing.next(t)
	waitLog(t, w, "retrying")
	w.stop() // fails the test if Run does not return
	if !strings.Contains(w.log.String(), "dropped at shutdown") {
		t.Errorf("log:\n%s", w.log)
	}
}

func TestNoReceivers(t *testing.T) {
	w := start(t, Config{}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	w.stop()
}

func TestNewReadsFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("ftp://user:pw@example.com/x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    Receiver
		want string
	}{
		{"missing url file", Receiver{Name: "a", URLFile: filepath.Join(dir, "none")}, "notifications.receivers[0].urlFile: reading"},
		{"bad url in file", Receiver{Name: "a", URLFile: bad}, "notifications.receivers[0].urlFile: the URL in " + bad + ": must be an http or https URL"},
		{"missing header file", Receiver{Name: "a", URL: "https://example.com", Headers: []Header{{Name: "Authorization", ValueFile: filepath.Join(dir, "none")}}}, "notifications.receivers[0].headers[0].valueFile: reading"},
		{"invalid", Receiver{Name: "A", URL: "https://example.com"}, "notifications.receivers[0].name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Config: Config{Receivers: []Receiver{tc.r}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("the error repeats the URL: %v", err)
			}
		})
	}
}

func TestWarnsOfPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		url  string
		warn bool
	}{
		{"http://hooks.example.com/x", true},
		{"https://hooks.example.com/x", false},
		{"http://127.0.0.1:9000/x", false},
		{"http://localhost/x", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			var log syncBuffer
			_, err := New(Options{
				Config: Config{Receivers: []Receiver{{Name: "r", URL: tc.url}}},
				Logger: slog.New(slog.NewTextHandler(&log, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(log.String(), "not https"); got != tc.warn {
				t.Errorf("warned: %v, want %v:\n%s", got, tc.warn, log.String())
			}
			if strings.Contains(log.String(), "hooks.example.com") {
				t.Errorf("the URL was logged: %s", log.String())
			}
		})
	}
}

// A credential written inline in a header is masked in the log, even when
// the receiver echoes the request back in its refusal.
func TestInlineCredentialNotLogged(t *testing.T) {
	const token = "Bearer s3cr3t-inline-token-value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad request; you sent Authorization: %s", r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	w := start(t, Config{Receivers: []Receiver{{Name: "echo", URL: srv.URL,
		Headers: []Header{{Name: "Authorization", Value: token}}}}}, nil)
	w.pipelineEnd(succeeded("p1", "web"))
	waitLog(t, w, "not retried")
	out := w.log.String()
	if strings.Contains(out, "s3cr3t-inline-token-value") {
		t.Errorf("the inline credential was logged:\n%s", out)
	}
	if !strings.Contains(out, "you sent Authorization") {
		t.Errorf("the receiver's answer is not in the log, so this test shows nothing:\n%s", out)
	}
}
