package environment_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime/local"
)

// A staging manifest deleted by hand is torn down as soon as the state
// repository triggers a sync (its webhook, the pipeline), without waiting
// for the poll (a thousand hours here): real state repository, real local
// runtime, real gateway.
func TestTriggerTearsDownWithoutThePoll(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	rt, err := local.New(local.Options{Dir: filepath.Join(dir, "envs"), SecretsDir: filepath.Join(dir, "secrets"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, env := range rt.Envs() {
			_ = rt.Destroy(ctx, env)
		}
		_ = rt.Close(ctx)
	})
	bare := filepath.Join(dir, "state.git")
	if err := gitops.InitBare(bare, "main"); err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{EnvName: "v1", DeployingWorkflowName: "wf-v1", Apps: map[string]*manifest.App{"web": app("v1")}}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gitops.CommitDir(ctx, bare, "main", fstest.MapFS{manifest.StagingPath("v1"): {Data: data}}, "seed"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(ctx, bare, filepath.Join(dir, "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{})
	rec := events.New(nil, nil)
	c := environment.New(repo, rt, binArtifacts{}, gw, noReports{}, &gcRollouts{},
		environment.Options{PollInterval: 1000 * time.Hour, Events: rec, Logger: log})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	ready := waitFor(t, rec, 0, "v1", "Ready")
	if _, ok := gw.Route("v1", "web"); !ok || !slices.Contains(rt.Envs(), "v1") {
		t.Fatalf("v1 ready but not routed or not running (envs %v)", rt.Envs())
	}
	if _, err := repo.Commit(ctx, "delete v1 by hand", gitops.Change{Path: manifest.StagingPath("v1"), Delete: true}); err != nil {
		t.Fatal(err)
	}
	c.Trigger()
	waitFor(t, rec, ready, "v1", "TornDown")
	if _, ok := gw.Route("v1", "web"); ok || slices.Contains(rt.Envs(), "v1") || slices.Contains(c.Envs(), "v1") {
		t.Fatalf("v1 torn down but still routed or running (runtime %v, controller %v)", rt.Envs(), c.Envs())
	}
}

// waitFor waits for an Environment event of name with reason after seq and
// returns its seq; bounded so that a broken controller fails the test.
func waitFor(t *testing.T, rec *events.Recorder, seq uint64, name, reason string) uint64 {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		evs, wake := rec.Since(seq, 0)
		for _, e := range evs {
			if e.Kind == events.Environment && e.Name == name && e.Reason == reason {
				return e.Seq
			}
			seq = e.Seq
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no %s event for %s", reason, name)
		}
	}
}
