package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/test/harness"
)

// secondApp is the other app of the concurrency tests: a copy of
// homelabping under its own name, repository and production host, in the
// same state repository.
const secondApp = "homelabecho"

// quickCanary is a canary strategy with one short step: the tests here are
// about many changes at once, not about the canary's analysis.
const quickCanary = `      - setWeight: 50
      - pause: {duration: 1s}
`

// fiveSecondCanary holds each canary 5 s: long enough that the
// promotions of changes pushed close together would overlap unless they
// are serialized.
const fiveSecondCanary = `      - setWeight: 50
      - pause: {duration: 5s}
`

// pausedCanary stops at 50 % until promoted or aborted.
const pausedCanary = `      - setWeight: 50
      - pause: {}
`

// TestConcurrentChanges runs, on one Runway tracking two apps in one state
// repository, what real teams do: both apps changed at the same time, a
// person committing to the state repository during a pipeline, five pushes
// to one app within a few seconds, and a canary aborted while another
// environment is being created. The scenarios run in order: each needs the
// apps to have a version in production.
func TestConcurrentChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	h, _, _ := startRunwayWith(ctx, t, harness.Options{
		Apps: []harness.App{{Name: secondApp}},
		// A pipeline waiting on a report that can never come fails in 5
		// minutes rather than the default 30.
		Tune: func(c *server.Config) { c.Timeouts.Rollout.Duration = 5 * time.Minute },
	})
	apps := []string{harness.AppName, secondApp}

	t.Run("two apps changed at the same time are both promoted", func(t *testing.T) {
		// First versions: production has neither app yet.
		ids := pushAll(ctx, t, h, apps, func(app string) []byte { return quickSpec(t, app, quickCanary) }, "first version")
		versions := map[string]string{}
		for app, id := range ids {
			p := waitEnded(ctx, t, h, id)
			if p.Phase != pipeline.Succeeded {
				t.Fatalf("%s's pipeline: %s", app, describe(p))
			}
			versions[app] = p.Version
		}
		assertProductionManifest(t, h, versions)
		for app, v := range versions {
			assertServes(ctx, t, h, app, v)
		}
		// Then a change to each, at the same time, each through its canary
		// over the stable version.
		ids = pushAll(ctx, t, h, apps, func(app string) []byte { return quickSpec(t, app, quickCanary) }, "second version")
		for app, id := range ids {
			p := waitEnded(ctx, t, h, id)
			if p.Phase != pipeline.Succeeded {
				t.Fatalf("%s's pipeline: %s", app, describe(p))
			}
			versions[app] = p.Version
		}
		assertProductionManifest(t, h, versions)
		for app, v := range versions {
			assertServes(ctx, t, h, app, v)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	note := "edited by hand " + time.Now().UTC().Format(time.RFC3339Nano)
	t.Run("a commit made by hand during a pipeline is kept", func(t *testing.T) {
		sha := commitSpec(ctx, t, h, harness.AppName, "", quickSpec(t, harness.AppName, quickCanary), "hand-commit scenario")
		id := pushOK(ctx, t, h, harness.AppName, sha, "change while a person edits the state repo")
		if _, ok, err := h.WaitStep(ctx, id, func(p *pipeline.Pipeline) bool { return p.StagingEnv != "" }); err != nil || !ok {
			t.Fatalf("pipeline %s never named its staging environment (%v)", id, err)
		}
		if _, err := h.CommitState(ctx, "ops: note who looks after production", handEdit(note)); err != nil {
			t.Fatal(err)
		}
		notifyState(ctx, t, h)
		p := waitEnded(ctx, t, h, id)
		if p.Phase != pipeline.Succeeded {
			t.Fatalf("pipeline: %s", describe(p))
		}
		assertHandEditKept(t, h, note)
		if got := productionVersions(t, h)[harness.AppName]; got != p.Version {
			t.Fatalf("production manifest has %s %s, want the pipeline's %s", harness.AppName, got, p.Version)
		}
		assertServes(ctx, t, h, harness.AppName, p.Version)
	})

	t.Run("five pushes to one app: promotions in commit order, none lost", func(t *testing.T) {
		testFivePushes(ctx, t, h)
	})

	t.Run("a canary's abort completes while another environment is being created", func(t *testing.T) {
		testAbortDuringCreate(ctx, t, h)
	})

	t.Run("at the end: the hand edit is kept and no staging environment is left", func(t *testing.T) {
		assertHandEditKept(t, h, note)
		waitNoStaging(ctx, t, h)
	})
}

// testFivePushes pushes five commits to one app within a few seconds.
// Every pipeline must end Succeeded or Superseded, production must end on
// the newest commit, and the production manifest's history must show the
// app's versions only in commit order, with every promoted version in it
// and no superseded one.
func testFivePushes(ctx context.Context, t *testing.T, h *harness.Harness) {
	const pushes = 5
	var ids []string
	for i := range pushes {
		sha := commitSpec(ctx, t, h, harness.AppName, "", quickSpec(t, harness.AppName, fiveSecondCanary), fmt.Sprintf("push %d of %d", i+1, pushes))
		ids = append(ids, pushOK(ctx, t, h, harness.AppName, sha, fmt.Sprintf("push %d of %d", i+1, pushes)))
		time.Sleep(500 * time.Millisecond) // a person's pace, not a condition
	}
	byVersion := map[string]int{} // version -> push index
	var ended []*pipeline.Pipeline
	for i, id := range ids {
		p := waitEnded(ctx, t, h, id)
		ended = append(ended, p)
		if p.Version != "" {
			byVersion[p.Version] = i
		}
	}
	for i, p := range ended {
		if p.Phase != pipeline.Succeeded && p.Phase != pipeline.Superseded {
			t.Errorf("push %d: want Succeeded or Superseded, got %s", i+1, describe(p))
		}
	}
	// The scenario is about the promotion gate: unless one pipeline
	// waited for another's promotion or was superseded, the pushes did not
	// overlap at promote and nothing here tested the order.
	exercised := false
	for _, p := range ended {
		if s := p.Step(pipeline.StepPromote); p.Phase == pipeline.Superseded || (s != nil && strings.Contains(s.Log, "waiting to promote")) {
			exercised = true
		}
	}
	if !exercised {
		t.Errorf("no pipeline of the %d pushes was superseded or waited to promote (its promote step's log says \"waiting to promote\"): "+
			"their promotions never overlapped, so the promotion order was not exercised", pushes)
	}
	last := ended[pushes-1]
	if last.Phase != pipeline.Succeeded {
		t.Fatalf("the newest push's pipeline %s ended %s (%s); nothing newer could supersede it", last.ID, last.Phase, last.Reason)
	}
	if got := productionVersions(t, h)[harness.AppName]; got != last.Version {
		t.Fatalf("production manifest ends on %s, want the newest commit's %s", got, last.Version)
	}
	assertServes(ctx, t, h, harness.AppName, last.Version)

	// The history: the app's version after each commit that changed the
	// production manifest, mapped to the push it came from.
	history, err := h.ProductionHistory()
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	seen := map[string]bool{}
	prev := ""
	for _, at := range history {
		if at.Err != nil {
			t.Fatalf("production manifest at %.12s (%q) does not parse: %v", at.Commit, firstLine(at.Message), at.Err)
		}
		a := at.Manifest.Apps[harness.AppName]
		if a == nil || a.Version() == prev {
			continue
		}
		v := a.Version()
		prev = v
		if i, ok := byVersion[v]; ok {
			order = append(order, i)
			seen[v] = true
			t.Logf("production %s -> %s (push %d) at %.12s %q", harness.AppName, v, i+1, at.Commit, firstLine(at.Message))
		} else if len(order) > 0 {
			t.Errorf("after this test's promotions began, production went to %s at %.12s (%q), a version of none of its pushes", v, at.Commit, firstLine(at.Message))
		}
	}
	if !slices.IsSorted(order) || len(slices.Compact(slices.Clone(order))) != len(order) {
		t.Errorf("production took the pushes in the order %v: want increasing commit order", plusOne(order))
	}
	for i, p := range ended {
		switch {
		case p.Phase == pipeline.Succeeded && !seen[p.Version]:
			t.Errorf("push %d's pipeline %s Succeeded but its version %s never reached the production manifest: a lost promotion", i+1, p.ID, p.Version)
		case p.Phase == pipeline.Superseded && seen[p.Version]:
			t.Errorf("push %d's pipeline %s ended Superseded but its version %s was promoted", i+1, p.ID, p.Version)
		}
	}
	waitNoStaging(ctx, t, h)
}

// testAbortDuringCreate holds a canary of the example app paused in
// production while the second app's change brings up a staging
// environment that takes 20 s to become ready, and aborts the canary
// meanwhile. The abort must complete before that environment is ready:
// it does not wait behind it. The order is read from the events'
// sequence numbers, not from clocks.
func testAbortDuringCreate(ctx context.Context, t *testing.T, h *harness.Harness) {
	stable := productionVersions(t, h)[harness.AppName]
	since, err := h.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolloutName := "production/" + harness.AppName
	sha := commitSpec(ctx, t, h, harness.AppName, "", quickSpec(t, harness.AppName, pausedCanary), "canary held at 50%")
	canaryID := pushOK(ctx, t, h, harness.AppName, sha, "canary held at 50%")
	if _, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Rollout, Name: rolloutName, Reason: "Paused"}, 10*time.Minute); err != nil {
		t.Fatalf("the canary never paused: %v", err)
	}

	sha = commitSpec(ctx, t, h, secondApp, "testdata/changes/slow-ready", quickSpec(t, secondApp, quickCanary), "slow to become ready")
	slowID := pushOK(ctx, t, h, secondApp, sha, "slow to become ready")
	p, ok, err := h.WaitStep(ctx, slowID, func(p *pipeline.Pipeline) bool { return p.StagingEnv != "" })
	if err != nil || !ok {
		t.Fatalf("pipeline %s never named its staging environment (%v): %s %s", slowID, err, p.Phase, p.Reason)
	}
	env := p.StagingEnv
	creating, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Environment, Name: env, Reason: "Creating"}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := h.Events(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := harness.FindEvent(evs, harness.EventMatch{Kind: events.Environment, Name: env, Reason: "Ready"}); ok {
		t.Fatalf("environment %s was ready (event %d) before the abort was sent: the slow-ready change was not slow enough to test anything", env, e.Seq)
	}

	status, body, err := h.API(ctx, http.MethodPost, "/api/v1/rollouts/"+rolloutName+"/abort", strings.NewReader(`{"reason":"test: abort while another environment is created"}`))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusAccepted {
		t.Fatalf("abort: %d %s", status, body)
	}
	aborted, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Rollout, Name: rolloutName, Reason: "Aborted"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Environment, Name: env, Reason: "Ready"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("events: %d Environment %s Creating, %d Rollout %s Aborted, %d Environment %s Ready", creating.Seq, env, aborted.Seq, rolloutName, ready.Seq, env)
	// Creating before Aborted holds by construction (the abort was sent
	// after Creating was seen); it is checked only as a sanity check of
	// the events' sequence.
	if creating.Seq >= aborted.Seq {
		t.Fatalf("environment %s's Creating (event %d) after the abort's Aborted (%d), although the abort was sent after it: the events' sequence is broken", env, creating.Seq, aborted.Seq)
	}
	// What this scenario is about: the environment was not ready when the
	// abort was sent (checked above), and the abort completed before it
	// became ready, so it did not wait behind the environment's creation.
	if aborted.Seq >= ready.Seq {
		t.Fatalf("the abort completed at event %d, after environment %s became ready (%d; Creating %d): it waited behind the environment", aborted.Seq, env, ready.Seq, creating.Seq)
	}

	canary := waitEnded(ctx, t, h, canaryID)
	if canary.Phase != pipeline.Failed || canary.FailedStep != pipeline.StepAwaitRollout {
		t.Errorf("aborted canary's pipeline %s ended %s at %s (%s), want Failed at %s", canary.ID, canary.Phase, canary.FailedStep, canary.Reason, pipeline.StepAwaitRollout)
	}
	if got := productionVersions(t, h)[harness.AppName]; got != stable {
		t.Errorf("after the abort the production manifest has %s %s, want the stable %s", harness.AppName, got, stable)
	}
	assertServes(ctx, t, h, harness.AppName, stable)
	slow := waitEnded(ctx, t, h, slowID)
	if slow.Phase != pipeline.Succeeded {
		t.Errorf("slow change's pipeline: %s", describe(slow))
	}
}

// quickSpec is the example's app spec named app with the given canary
// steps (and no analysis).
func quickSpec(t testing.TB, app, steps string) []byte {
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
	return harness.SpecNamed([]byte(s[:i]+"strategy:\n  canary:\n    steps:\n"+steps), app)
}

// commitSpec commits spec as app's runway.yaml, a CHANGE file saying what
// the commit is (so that each commit changes something) and the files of
// overlay (a directory; "" none).
func commitSpec(ctx context.Context, t testing.TB, h *harness.Harness, app, overlay string, spec []byte, what string) string {
	t.Helper()
	files := fstest.MapFS{
		"runway.yaml": {Data: spec, Mode: 0o644},
		"CHANGE":      {Data: []byte(what + "\n"), Mode: 0o644},
	}
	if overlay != "" {
		err := filepath.WalkDir(overlay, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(overlay, p)
			files[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data, Mode: 0o644}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sha, err := h.CommitFiles(ctx, app, files, what)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// pushOK pushes commit of app and returns the pipeline it started.
func pushOK(ctx context.Context, t testing.TB, h *harness.Harness, app, sha, msg string) string {
	t.Helper()
	resp, err := h.PushApp(ctx, app, "main", sha, msg)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusAccepted || resp.Pipeline == "" {
		t.Fatalf("push of %s %.12s: webhook answered %d %s", app, sha, resp.Status, resp.Body)
	}
	return resp.Pipeline
}

// pushAll commits spec(app) to every app, then pushes all the commits
// back to back, and returns each app's pipeline.
func pushAll(ctx context.Context, t testing.TB, h *harness.Harness, apps []string, spec func(app string) []byte, what string) map[string]string {
	t.Helper()
	shas := map[string]string{}
	for _, app := range apps {
		shas[app] = commitSpec(ctx, t, h, app, "", spec(app), app+": "+what)
	}
	ids := map[string]string{}
	for _, app := range apps {
		ids[app] = pushOK(ctx, t, h, app, shas[app], app+": "+what)
	}
	return ids
}

// waitEnded waits, at most 15 minutes, for a pipeline to end, and logs its
// steps.
func waitEnded(ctx context.Context, t testing.TB, h *harness.Harness, id string) *pipeline.Pipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	p, err := h.WaitPipeline(ctx, id, nil)
	if err != nil {
		t.Fatalf("waiting for pipeline %s: %v", id, err)
	}
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "  %-28s %-10s %s\n", s.Name, s.Phase, s.Duration().Round(time.Millisecond))
	}
	t.Logf("pipeline %s %s %s %s (%s)\n%s", p.ID, p.App, p.Version, p.Phase, p.Reason, b.String())
	return p
}

// productionVersions reads each app's version from the production
// manifest at the state repository's head.
func productionVersions(t testing.TB, h *harness.Harness) map[string]string {
	t.Helper()
	data, found, err := h.StateFile(manifest.ProductionPath)
	if err != nil || !found {
		t.Fatalf("reading the production manifest: found %v, %v", found, err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, a := range m.Apps {
		out[name] = a.Version()
	}
	return out
}

// assertProductionManifest checks that the production manifest holds
// every app at its version.
func assertProductionManifest(t testing.TB, h *harness.Harness, want map[string]string) {
	t.Helper()
	got := productionVersions(t, h)
	for app, v := range want {
		if got[app] != v {
			t.Errorf("production manifest has %s at %q, want %s (manifest: %v)", app, got[app], v, got)
		}
	}
}

// assertServes checks 20 requests to app's production through the
// gateway: all answered 200 by version.
func assertServes(ctx context.Context, t testing.TB, h *harness.Harness, app, version string) {
	t.Helper()
	for i := range 20 {
		status, body, v, err := h.Get(ctx, harness.Host(app, manifest.ProductionEnv), "/ping")
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK || v != version {
			t.Fatalf("%s production request %d: %d %q from %q, want 200 from %s", app, i, status, body, v, version)
		}
	}
}

// handEdit is what a person commits to the production manifest: a
// top-level key Runway does not know, and a description on the postgres
// entry.
func handEdit(note string) gitops.Edit {
	return func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		data, err := read(manifest.ProductionPath)
		if err != nil {
			return nil, err
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, err
		}
		var apps map[string]map[string]json.RawMessage
		if err := json.Unmarshal(doc["apps"], &apps); err != nil {
			return nil, err
		}
		if apps["postgres"] == nil {
			return nil, fmt.Errorf("no postgres entry in %s", manifest.ProductionPath)
		}
		quoted, _ := json.Marshal(note)
		doc["maintainer_note"] = quoted
		apps["postgres"]["last_change_description"] = quoted
		if doc["apps"], err = json.Marshal(apps); err != nil {
			return nil, err
		}
		out, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return nil, err
		}
		return []gitops.Change{{Path: manifest.ProductionPath, Data: append(out, '\n')}}, nil
	}
}

// assertHandEditKept checks that the production manifest at the head
// still holds what handEdit(note) wrote.
func assertHandEditKept(t testing.TB, h *harness.Harness, note string) {
	t.Helper()
	data, _, err := h.StateFile(manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Note string `json:"maintainer_note"`
		Apps map[string]struct {
			Description string `json:"last_change_description"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Note != note || doc.Apps["postgres"].Description != note {
		t.Fatalf("the hand-made edit was lost: maintainer_note %q, postgres last_change_description %q, want %q\n%s", doc.Note, doc.Apps["postgres"].Description, note, data)
	}
}

// notifyState sends the state repository's push webhook (Runway would
// otherwise see the commit at its next poll).
func notifyState(ctx context.Context, t testing.TB, h *harness.Harness) {
	t.Helper()
	resp, err := h.PushState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status/100 != 2 {
		t.Fatalf("state repository webhook answered %d %s", resp.Status, resp.Body)
	}
	t.Logf("state repository webhook: %d %s", resp.Status, strings.TrimSpace(resp.Body))
}

// waitNoStaging waits, at most 2 minutes, until the state repository
// declares no staging environment and the API lists none.
func waitNoStaging(ctx context.Context, t testing.TB, h *harness.Harness) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left, err := h.StagingManifests()
		if err != nil {
			t.Fatal(err)
		}
		listed, err := listedEnvs(ctx, h)
		listed = slices.DeleteFunc(listed, func(e string) bool { return e == manifest.ProductionEnv })
		if err == nil && len(left) == 0 && len(listed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("staging environments left: manifests %v, listed by the API %v", left, listed)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listedEnvs names the environments the API lists.
func listedEnvs(ctx context.Context, h *harness.Harness) ([]string, error) {
	var envs []struct {
		Name string `json:"name"`
	}
	if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range envs {
		out = append(out, e.Name)
	}
	return out, nil
}

// describe says how a pipeline ended, with the end of its failed step's
// log.
func describe(p *pipeline.Pipeline) string {
	msg := fmt.Sprintf("%s (%s %s) %s", p.ID, p.App, p.Version, p.Phase)
	if p.FailedStep != "" {
		msg += " at " + p.FailedStep
	}
	if p.Reason != "" {
		msg += ": " + p.Reason
	}
	if s := p.Step(p.FailedStep); s != nil && s.Log != "" {
		msg += "\n--- log tail of " + s.Name + " ---\n" + harness.TailLines(s.Log, 30)
	}
	return msg
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func plusOne(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x + 1
	}
	return out
}
