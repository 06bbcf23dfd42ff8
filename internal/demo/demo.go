// Package demo runs the whole method end to end on one machine (runway
// demo): it makes a state repository and an app repository from
// examples/, starts Runway, deploys the first version of homelabping,
// pushes a change with a signed GitHub webhook and follows it through
// staging and the canary to production, only through public interfaces
// (git, webhook, API, gateway). The end-to-end tests' harness is not here:
// it is test/harness, which the runway binary does not link.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/pipeline"
)

// RunOptions configure the demo.
type RunOptions struct {
	Examples string
	// Keep leaves Runway running until ctx ends.
	Keep bool
	// Timeout bounds the whole demo. Zero: 10m.
	Timeout time.Duration
	// Live redraws a view of the pipeline in place (steps, durations, the
	// canary's weight), for a terminal; false prints plain lines.
	Live bool
}

// Run runs the demo, printing to out. It returns an error naming the
// failing step when the method did not hold.
func Run(ctx context.Context, out io.Writer, opts RunOptions) (err error) {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	start := time.Now()
	keepCtx := ctx // --keep runs until the caller's context ends (Ctrl-C), not the timeout
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "runway-demo-")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "runway.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(out, "Runway demo in %s (server log: %s)\n", dir, logf.Name())
	h, err := startRunway(ctx, opts.Examples, dir, logf)
	if err != nil {
		return fmt.Errorf("starting runway: %w", err)
	}
	h.live = opts.Live
	defer func() {
		if opts.Keep && err == nil {
			fmt.Fprintf(out, "\n--keep: Runway keeps running. API %s  gateway http://%s (try: curl -H 'Host: %s' http://%s/ping). Ctrl-C to stop.\n",
				h.apiURL(), h.gatewayAddr(), h.productionHost(), h.gatewayAddr())
			fmt.Fprintf(out, "The API needs its token: export RUNWAY_API=%s RUNWAY_TOKEN=$(cat %s); runway pipelines\n", h.apiURL(), h.tokenFile())
			<-keepCtx.Done()
		}
		fmt.Fprintln(out, "stopping runway")
		if cerr := h.close(); cerr != nil && err == nil {
			err = cerr
		}
		if err == nil && !opts.Keep {
			_ = os.RemoveAll(dir)
		}
	}()
	fmt.Fprintf(out, "Runway API %s, gateway http://%s\n\n", h.apiURL(), h.gatewayAddr())

	// 1. The first version goes through the same pipeline; production has
	// no stable version yet, so it is deployed without a canary.
	head, err := h.commitChange(ctx, "", "deploy the first version")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "== First version: push %.12s of %s\n", head, RepoName)
	first, err := h.follow(ctx, out, head, "homelabping: ping answers pong")
	if err != nil {
		return err
	}
	_, body, _, err := h.get(ctx, h.productionHost(), "/ping")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "production /ping -> %s\n\n", body)
	if body != "pong" {
		return fmt.Errorf("production answered %q after the first deploy, want pong", body)
	}

	// 2. The change under test, with traffic on production so the canary's
	// analysis has requests to judge.
	sha, err := h.commitChange(ctx, "json-pong", "ping answers JSON")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "== Change: /ping answers {\"value\":\"pong\"}; push %.12s\n", sha)
	traffic := SendTraffic(ctx, 20*time.Millisecond, 10*time.Minute, h.probeProduction)
	p, err := h.follow(ctx, out, sha, "ping answers JSON")
	split := summarize(traffic.Stop())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "production traffic during the change: %s\n", split)
	_, body, version, err := h.get(ctx, h.productionHost(), "/ping")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nproduction /ping (version %s) -> %s\n", version, body)
	if body != `{"value":"pong"}` {
		return fmt.Errorf("production answers %q, want {\"value\":\"pong\"}", body)
	}
	if err := h.checkStagingGone(ctx, p.StagingEnv); err != nil {
		return err
	}
	fmt.Fprintf(out, "staging environment %s is gone: no route, no process, no listening port, no data dir\n", p.StagingEnv)
	printSummary(out, first, p, time.Since(start))
	return nil
}

// follow pushes commit and prints the pipeline live until it ends.
func (h *runway) follow(ctx context.Context, out io.Writer, commit, message string) (*pipeline.Pipeline, error) {
	id, err := h.push(ctx, commit, message)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "webhook accepted: pipeline %s\n", id)
	out = &lockedWriter{w: out}
	var view *liveView // on a terminal: redrawn in place
	if h.live {
		view = newLiveView(out)
	}
	say := func(format string, args ...any) {
		if view != nil {
			view.note(strings.TrimSpace(fmt.Sprintf(format, args...)))
			return
		}
		fmt.Fprintf(out, format, args...)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		h.watchCanary(watchCtx, out, id, view)
	}()
	printed := map[string]pipeline.Phase{}
	shownURL := false
	p, err := h.waitPipeline(ctx, id, func(p *pipeline.Pipeline) {
		if view != nil {
			view.setPipeline(p)
		}
		for _, s := range p.Steps {
			if printed[s.Name] == s.Phase {
				continue
			}
			if view == nil {
				printStep(out, s)
			}
			printed[s.Name] = s.Phase
			if s.Name == pipeline.StepAwaitDeploy && s.Phase == pipeline.Succeeded {
				h.recordStaging(ctx, p.StagingEnv)
				if p.StagingURL != "" {
					say("    staging environment %s is up: %s (any client: curl %s/ping)\n", p.StagingEnv, p.StagingURL, p.StagingURL)
				}
			}
			if s.Name == pipeline.StepStage && s.Phase == pipeline.Succeeded && !shownURL && p.StagingURL != "" {
				say("    staging environment %s: %s (Host header routes it; gateway %s)\n", p.StagingEnv, p.StagingURL, h.gatewayAddr())
				shownURL = true
			}
		}
	})
	stopWatch()
	<-watched
	if view != nil {
		view.finish()
	}
	if err != nil {
		return nil, err
	}
	if p.Phase != pipeline.Succeeded {
		msg := fmt.Sprintf("pipeline %s %s at step %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
		if s := p.Step(p.FailedStep); s != nil {
			msg += "\n--- log tail of " + s.Name + " ---\n" + TailLines(s.Log, 40)
		}
		return p, errors.New(msg)
	}
	fmt.Fprintf(out, "pipeline %s Succeeded: %s is in production\n", p.ID, p.Version)
	return p, nil
}

// printStep prints a step's new phase as a plain line.
func printStep(out io.Writer, s pipeline.Step) {
	switch s.Phase {
	case pipeline.Running:
		fmt.Fprintf(out, "  ▶ %-28s started\n", s.Name)
	case pipeline.Succeeded:
		fmt.Fprintf(out, "  ✓ %-28s %s\n", s.Name, s.Duration().Round(10*time.Millisecond))
	case pipeline.Failed:
		fmt.Fprintf(out, "  ✗ %-28s %s: %s\n", s.Name, s.Duration().Round(10*time.Millisecond), s.Error)
	case pipeline.Skipped:
		fmt.Fprintf(out, "  - %-28s skipped\n", s.Name)
	}
}

// recordStaging remembers the replica addresses of a staging environment,
// to check after teardown that none still listens.
func (h *runway) recordStaging(ctx context.Context, env string) {
	var envs []envStatus
	if err := h.getJSON(ctx, "/api/v1/environments", &envs); err != nil {
		return
	}
	for _, e := range envs {
		if e.Name != env {
			continue
		}
		for _, a := range e.Apps {
			h.stagingAddrs[env] = append(h.stagingAddrs[env], a.Replicas...)
		}
	}
}

// watchCanary prints the production rollout of the pipeline's version as
// it moves: each weight, pause and analysis verdict.
// With a live view it shows them there instead, and redraws the view
// for the running step's duration.
func (h *runway) watchCanary(ctx context.Context, out io.Writer, id string, view *liveView) {
	var version, lastMsg string
	seenRuns := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		if view != nil {
			view.tick()
		}
		if version == "" {
			var p pipeline.Pipeline
			if err := h.getJSON(ctx, "/api/v1/pipelines/"+id, &p); err != nil || p.Version == "" {
				continue
			}
			version = p.Version
		}
		var rs []rolloutStatus
		if err := h.getJSON(ctx, "/api/v1/rollouts", &rs); err != nil {
			continue
		}
		for _, r := range rs {
			if r.CanaryVersion != version {
				continue
			}
			if view != nil {
				view.setCanary(r)
				break
			}
			for _, a := range r.Analyses[min(seenRuns, len(r.Analyses)):] {
				fmt.Fprintf(out, "      canary: analysis %s %s: %s\n", a.Name, a.Phase, a.Reason)
			}
			seenRuns = len(r.Analyses)
			if r.Message != lastMsg {
				fmt.Fprintf(out, "      canary: %s\n", r.Message)
				lastMsg = r.Message
			}
			break
		}
	}
}

// lockedWriter serialises the step lines and the canary lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TailLines returns the last lines of s.
func TailLines(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// checkStagingGone confirms through the API, the gateway and the data dir
// that nothing of env remains.
func (h *runway) checkStagingGone(ctx context.Context, env string) error {
	var envs []envStatus
	if err := h.getJSON(ctx, "/api/v1/environments", &envs); err != nil {
		return err
	}
	for _, e := range envs {
		if e.Name == env {
			return fmt.Errorf("environment %s still listed", env)
		}
	}
	status, _, _, err := h.get(ctx, AppName+"."+env+".localhost", "/ping")
	if err != nil {
		return err
	}
	if status != 404 {
		return fmt.Errorf("gateway still routes %s (status %d)", env, status)
	}
	if _, err := os.Stat(filepath.Join(h.workDir(), "envs", env)); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("directory of %s still exists", env)
	}
	if left := Leftovers(h.workDir(), env); len(left) > 0 {
		return fmt.Errorf("processes of %s still run: %s", env, strings.Join(left, "; "))
	}
	for _, addr := range h.stagingAddrs[env] {
		if Listening(addr) {
			return fmt.Errorf("port %s of %s still listens", addr, env)
		}
	}
	return nil
}

func printSummary(out io.Writer, first, p *pipeline.Pipeline, total time.Duration) {
	d := func(names ...string) time.Duration {
		var sum time.Duration
		for _, n := range names {
			if s := p.Step(n); s != nil {
				sum += s.Duration()
			}
		}
		return sum.Round(10 * time.Millisecond)
	}
	fmt.Fprintf(out, "\nTiming of the change (pipeline %s):\n", p.ID)
	fmt.Fprintf(out, "  build          %s\n", d(pipeline.StepBuildApp, pipeline.StepBuildPipeline))
	fmt.Fprintf(out, "  staging ready  %s\n", d(pipeline.StepStage, pipeline.StepSubmit, pipeline.StepAwaitDeploy))
	fmt.Fprintf(out, "  tests          %s (staging) + %s (production)\n", d(pipeline.StepStagingMigrations, pipeline.StepStagingTests), d(pipeline.StepProductionMigrations, pipeline.StepProductionTests))
	fmt.Fprintf(out, "  canary         %s\n", d(pipeline.StepPromote, pipeline.StepAwaitRollout))
	fmt.Fprintf(out, "  teardown       %s\n", d(pipeline.StepTeardown))
	fmt.Fprintf(out, "  pipeline       %s (first version's pipeline: %s)\n", p.Finished.Sub(p.Created).Round(10*time.Millisecond), first.Finished.Sub(first.Created).Round(10*time.Millisecond))
	fmt.Fprintf(out, "  demo total     %s\n", total.Round(10*time.Millisecond))
}

// probeProduction asks production's /ping through the gateway.
func (h *runway) probeProduction(ctx context.Context) (string, int, error) {
	status, _, version, err := h.get(ctx, h.productionHost(), "/ping")
	return version, status, err
}

// envStatus is what the demo reads of an environment in the API.
type envStatus struct {
	Name string `json:"name"`
	Apps []struct {
		Replicas []string `json:"replicas"`
	} `json:"apps"`
}

// rolloutStatus is what the demo reads of a rollout in the API.
type rolloutStatus struct {
	CanaryVersion string `json:"canaryVersion"`
	Message       string `json:"message"`
	Step          int    `json:"step"`
	Steps         int    `json:"steps"`
	Weight        int    `json:"weight"`
	Analyses      []struct {
		Name   string `json:"name"`
		Phase  string `json:"phase"`
		Reason string `json:"reason"`
	} `json:"analyses"`
}
