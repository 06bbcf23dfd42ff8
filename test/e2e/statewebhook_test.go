package e2e

import (
	"context"
	"fmt"
	"net/http"
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

// filteredApp is tracked with path filters: only pushes touching src/
// (or go.mod) start its pipeline.
const filteredApp = "homelabdocs"

// TestStateRepoWebhook runs a Runway whose poll of the state repository
// is 10 minutes, so that whatever happens within a test's bounded waits
// happened because of a webhook: a staging environment a person adds or
// deletes by hand in the state repository is brought up or torn down when
// the state repository's push webhook arrives. It also checks the app
// path filters.
func TestStateRepoWebhook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, _, _ := startRunwayWith(ctx, t, harness.Options{
		Apps: []harness.App{{Name: filteredApp, Paths: []string{"src/**", "go.mod"}}},
		Tune: func(c *server.Config) { c.PollInterval.Duration = 10 * time.Minute },
	})

	t.Run("a staging manifest deleted by hand is torn down at the state repo's webhook", func(t *testing.T) {
		const env = "by-hand"
		since, err := h.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.CommitState(ctx, "ops: a database to try something", databaseOnly(env)); err != nil {
			t.Fatal(err)
		}
		notifyState(ctx, t, h)
		if _, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Environment, Name: env, Reason: "Ready"}, 2*time.Minute); err != nil {
			t.Fatalf("the environment added by hand did not come up within 2m, with a 10m poll: %v", err)
		}
		if envs, err := listedEnvs(ctx, h); err != nil || !slices.Contains(envs, env) {
			t.Fatalf("environment %s is ready but the API lists %v (%v)", env, envs, err)
		}

		if _, err := h.CommitState(ctx, "ops: done trying", func(func(string) ([]byte, error)) ([]gitops.Change, error) {
			return []gitops.Change{{Path: manifest.StagingPath(env), Delete: true}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		notifyState(ctx, t, h)
		if _, err := h.WaitEvent(ctx, since, harness.EventMatch{Kind: events.Environment, Name: env, Reason: "TornDown"}, 2*time.Minute); err != nil {
			t.Fatalf("the environment deleted by hand was not torn down within 2m, with a 10m poll: %v", err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			envs, err := listedEnvs(ctx, h)
			if err == nil && !slices.Contains(envs, env) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("environment %s torn down but still listed by the API: %v (%v)", env, envs, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		assertNoProcesses(t, h.WorkDir(), env)
	})

	t.Run("a push touching only filtered-out paths is acknowledged as ignored", func(t *testing.T) {
		sha, err := h.CommitFiles(ctx, filteredApp, fstest.MapFS{"docs/notes.md": {Data: []byte("notes\n"), Mode: 0o644}}, "docs: notes")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.PushApp(ctx, filteredApp, "main", sha, "docs: notes")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("webhook answer: %d %s", resp.Status, strings.TrimSpace(resp.Body))
		if resp.Status/100 != 2 || resp.Outcome != "ignored" || resp.Pipeline != "" {
			t.Fatalf("push touching only docs/notes.md: %d %s, want it acknowledged (2xx) as ignored and no pipeline", resp.Status, resp.Body)
		}
		if !strings.Contains(strings.ToLower(resp.Reason), "path") {
			t.Errorf("reason %q does not say the push touched no tracked path", resp.Reason)
		}
		ps, err := h.Pipelines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.App == filteredApp {
				t.Fatalf("an ignored push started pipeline %s", p.ID)
			}
		}

		// A push touching a tracked path does start one.
		sha, err = h.CommitFiles(ctx, filteredApp, fstest.MapFS{"src/notes.txt": {Data: []byte("source notes\n"), Mode: 0o644}}, "src: notes")
		if err != nil {
			t.Fatal(err)
		}
		resp, err = h.PushApp(ctx, filteredApp, "main", sha, "src: notes")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusAccepted || resp.Pipeline == "" {
			t.Fatalf("push touching src/notes.txt: %d %s, want a pipeline", resp.Status, resp.Body)
		}
		if p := waitEnded(ctx, t, h, resp.Pipeline); p.Phase != pipeline.Succeeded {
			t.Errorf("pipeline of a tracked path: %s", describe(p))
		}
	})
}

// databaseOnly adds staging environment env running only the production
// manifest's postgres, as a person would to get a scratch database.
func databaseOnly(env string) gitops.Edit {
	return func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		data, err := read(manifest.ProductionPath)
		if err != nil {
			return nil, err
		}
		prod, err := manifest.Parse(data)
		if err != nil {
			return nil, err
		}
		pg := prod.Apps["postgres"]
		if pg == nil {
			return nil, fmt.Errorf("production has no postgres entry")
		}
		m := &manifest.Manifest{EnvName: env, ChangeDescription: "by hand: " + env, Apps: map[string]*manifest.App{"postgres": pg}}
		out, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		return []gitops.Change{{Path: manifest.StagingPath(env), Data: out}}, nil
	}
}
