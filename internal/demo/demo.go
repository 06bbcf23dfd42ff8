package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// RunOptions configure the demo.
type RunOptions struct {
	Examples string
	// Keep leaves Runway running until ctx ends.
	Keep bool
	// Timeout bounds the whole demo. Zero: 10m.
	Timeout time.Duration
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
	h, err := Start(ctx, Options{Examples: opts.Examples, Dir: dir, Log: logf})
	if err != nil {
		return fmt.Errorf("starting runway: %w", err)
	}
	defer func() {
		if opts.Keep && err == nil {
			fmt.Fprintf(out, "\n--keep: Runway keeps running. API %s  gateway http://%s (try: curl -H 'Host: %s' http://%s/ping). Ctrl-C to stop.\n",
				h.APIURL(), h.GatewayAddr(), h.ProductionHost(), h.GatewayAddr())
			fmt.Fprintf(out, "The API needs its token: export RUNWAY_API=%s RUNWAY_TOKEN=$(cat %s); runway pipelines\n", h.APIURL(), h.TokenFile())
			<-keepCtx.Done()
		}
		fmt.Fprintln(out, "stopping runway")
		if cerr := h.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err == nil && !opts.Keep {
			_ = os.RemoveAll(dir)
		}
	}()
	fmt.Fprintf(out, "Runway API %s, gateway http://%s\n\n", h.APIURL(), h.GatewayAddr())

	// 1. The first version goes through the same pipeline; production has
	// no stable version yet, so it is deployed without a canary.
	head, err := h.CommitChange(ctx, "", "deploy the first version")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "== First version: push %.12s of %s\n", head, RepoName)
	first, err := h.follow(ctx, out, head, "homelabping: ping answers pong")
	if err != nil {
		return err
	}
	_, body, _, err := h.Get(ctx, h.ProductionHost(), "/ping")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "production /ping -> %s\n\n", body)
	if body != "pong" {
		return fmt.Errorf("production answered %q after the first deploy, want pong", body)
	}

	// 2. The change under test, with traffic on production so the canary's
	// analysis has requests to judge.
	sha, err := h.CommitChange(ctx, "json-pong", "ping answers JSON")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "== Change: /ping answers {\"value\":\"pong\"}; push %.12s\n", sha)
	traffic := h.StartTraffic(ctx)
	p, err := h.follow(ctx, out, sha, "ping answers JSON")
	split := summarize(traffic.Stop())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "production traffic during the change: %s\n", split)
	_, body, version, err := h.Get(ctx, h.ProductionHost(), "/ping")
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
func (h *Harness) follow(ctx context.Context, out io.Writer, commit, message string) (*pipeline.Pipeline, error) {
	resp, err := h.Push(ctx, "main", commit, message)
	if err != nil {
		return nil, err
	}
	if resp.Status != 202 || resp.Pipeline == "" {
		return nil, fmt.Errorf("webhook answered %d %s", resp.Status, resp.Body)
	}
	fmt.Fprintf(out, "webhook accepted: pipeline %s\n", resp.Pipeline)
	out = &lockedWriter{w: out}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go h.watchCanary(watchCtx, out, resp.Pipeline)
	printed := map[string]pipeline.Phase{}
	shownURL := false
	p, err := h.WaitPipeline(ctx, resp.Pipeline, func(p *pipeline.Pipeline) {
		for _, s := range p.Steps {
			if printed[s.Name] == s.Phase {
				continue
			}
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
			printed[s.Name] = s.Phase
			if s.Name == pipeline.StepAwaitDeploy && s.Phase == pipeline.Succeeded {
				h.recordStaging(ctx, p.StagingEnv)
				if p.StagingURL != "" {
					fmt.Fprintf(out, "    staging environment %s is up: %s (any client: curl %s/ping)\n", p.StagingEnv, p.StagingURL, p.StagingURL)
				}
			}
			if s.Name == pipeline.StepStage && s.Phase == pipeline.Succeeded && !shownURL && p.StagingURL != "" {
				fmt.Fprintf(out, "    staging environment %s: %s (Host header routes it; gateway %s)\n", p.StagingEnv, p.StagingURL, h.GatewayAddr())
				shownURL = true
			}
		}
	})
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

// recordStaging remembers the replica addresses of a staging environment,
// to check after teardown that none still listens.
func (h *Harness) recordStaging(ctx context.Context, env string) {
	var envs []environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
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
func (h *Harness) watchCanary(ctx context.Context, out io.Writer, id string) {
	var version, lastMsg string
	seenRuns := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		if version == "" {
			p, err := h.Pipeline(ctx, id)
			if err != nil || p.Version == "" {
				continue
			}
			version = p.Version
		}
		var rs []rollout.Status
		if err := h.GetJSON(ctx, "/api/v1/rollouts", &rs); err != nil {
			continue
		}
		for _, r := range rs {
			if r.CanaryVersion != version {
				continue
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
func (h *Harness) checkStagingGone(ctx context.Context, env string) error {
	var envs []environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
		return err
	}
	for _, e := range envs {
		if e.Name == env {
			return fmt.Errorf("environment %s still listed", env)
		}
	}
	status, _, _, err := h.Get(ctx, AppName+"."+env+".localhost", "/ping")
	if err != nil {
		return err
	}
	if status != 404 {
		return fmt.Errorf("gateway still routes %s (status %d)", env, status)
	}
	if _, err := os.Stat(filepath.Join(h.WorkDir(), "envs", env)); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("directory of %s still exists", env)
	}
	if left := Leftovers(h.WorkDir(), env); len(left) > 0 {
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

// Traffic sends requests to production until stopped, counting answers
// by "version/status".
type Traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	counts map[string]int
	sent   atomic.Int64
}

// StartTraffic sends a request to production every 20 ms, bounded to 10
// minutes, until Stop.
func (h *Harness) StartTraffic(ctx context.Context) *Traffic {
	return h.StartTrafficEvery(ctx, 20*time.Millisecond, 10*time.Minute)
}

// StartTrafficEvery sends a request to production every interval, for at
// most limit, until Stop.
func (h *Harness) StartTrafficEvery(ctx context.Context, interval, limit time.Duration) *Traffic {
	ctx, cancel := context.WithTimeout(ctx, limit)
	t := &Traffic{cancel: cancel, counts: map[string]int{}}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			status, _, version, err := h.Get(ctx, h.ProductionHost(), "/ping")
			if ctx.Err() != nil {
				return // stopped mid-request: not an answer
			}
			t.sent.Add(1)
			key := fmt.Sprintf("%s/%d", version, status)
			if err != nil {
				key = "error: " + err.Error()
			}
			t.mu.Lock()
			t.counts[key]++
			t.mu.Unlock()
		}
	}()
	return t
}

// Stop ends the traffic and returns the counts.
func (t *Traffic) Stop() map[string]int {
	t.cancel()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

func summarize(counts map[string]int) string {
	var parts []string
	total := 0
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
		total += n
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d requests (%s)", total, strings.Join(parts, ", "))
}
