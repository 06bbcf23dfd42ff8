package e2e

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/cli"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/test/harness"
)

// TestCancelDuringStaging cancels a pipeline with runway cancel while its
// staging environment is coming up (its app takes 20 s to listen): the
// pipeline ends Cancelled, the environment is gone (from the API, the
// gateway, the state repository, the disk and the process table), and
// nothing of the change reached the production manifest.
func TestCancelDuringStaging(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, dir, _ := startRunwayWith(ctx, t, harness.Options{})
	before, found, err := h.StateFile(manifest.ProductionPath)
	if err != nil || !found {
		t.Fatalf("reading the production manifest: %v %v", found, err)
	}

	sha := commitSpec(ctx, t, h, harness.AppName, "testdata/changes/slow-ready", quickSpec(t, harness.AppName, quickCanary), "slow to become ready")
	id := pushOK(ctx, t, h, harness.AppName, sha, "slow to become ready")
	p, ok, err := h.WaitStep(ctx, id, func(p *pipeline.Pipeline) bool {
		s := p.Step(pipeline.StepAwaitDeploy)
		return s != nil && s.Phase == pipeline.Running && p.StagingEnv != ""
	})
	if err != nil || !ok {
		t.Fatalf("pipeline %s never waited for its staging environment (%v): %s at %s: %s", id, err, p.Phase, p.FailedStep, p.Reason)
	}
	env := p.StagingEnv
	if envs, err := h.StagingManifests(); err != nil || !slices.Contains(envs, env) {
		t.Fatalf("staging manifest of %s not in the state repository while waiting for it: %v (%v)", env, envs, err)
	}

	// As a user would: runway cancel (which calls POST
	// /api/v1/pipelines/{id}/cancel).
	var stdout, stderr bytes.Buffer
	if code := cli.Run(ctx, []string{"cancel", id, "--api", h.APIURL(), "--token-file", h.TokenFile(), "--reason", "test: cancel during staging"}, &stdout, &stderr); code != 0 {
		t.Fatalf("runway cancel %s: exit %d: %s%s", id, code, stdout.String(), stderr.String())
	}
	p = waitEnded(ctx, t, h, id)
	if p.Phase != pipeline.Cancelled {
		t.Fatalf("cancelled pipeline: want Cancelled, got %s", describe(p))
	}
	waitNoStaging(ctx, t, h)
	assertEnvGone(ctx, t, h, dir, env)
	after, _, err := h.StateFile(manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("the cancelled change touched the production manifest:\nbefore %s\nafter %s", before, after)
	}
}
