package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/test/harness"
)

// TestSupervision kills production's processes from outside, as a crash or
// the OOM killer would, with a prober sending GET /ping through the
// gateway every 20 ms, and checks that the data plane's supervisor brings
// everything back without the control plane doing anything:
//   - kill -9 of one of the two replicas: no probe fails (the gateway
//     retries on the other replica and ejects the dead one), and the
//     replica is back and in the pool;
//   - kill -9 of both: probes fail only until the first restart;
//   - kill -9 of the environment's PostgreSQL: it is restarted and the
//     app recovers without a redeploy (same replicas, same version);
//   - a change whose process exits at once, every time: its staging
//     replicas are restarted with a growing backoff, visible in the API,
//     the pipeline fails in staging and production keeps its version;
//   - a change that crashes in production 5 s after it starts: the rollout
//     is aborted for it, the stable version serves and git is reverted.
func TestSupervision(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, dir, _ := startRunwayWith(ctx, t, harness.Options{})
	stable := deployFirstVersion(ctx, t, h)

	t.Run("kill one replica", func(t *testing.T) {
		before := readyReplicas(ctx, t, h, stable, 2)
		pr := startProber(ctx, h, 20*time.Millisecond, 3000)
		defer pr.stop()
		time.Sleep(300 * time.Millisecond) // a few probes before the kill
		victim := before[0]
		killed := killPID(t, victim.PID)
		after := waitReplicaBack(ctx, t, h, stable, victim, killed)
		back := time.Since(killed)
		time.Sleep(500 * time.Millisecond) // and a few after it is back
		pr.stop()
		t.Logf("kill -9 of replica %d (pid %d): back as pid %d and ready after %s; restarts %d, last exit %q; probes sent %d, failed %d %v",
			victim.Index, victim.PID, after.PID, back.Round(time.Millisecond), after.Restarts, after.LastExit, pr.sent(), pr.failed(), pr.counts())
		if pr.failed() != 0 {
			t.Errorf("%d of %d probes failed after one of two replicas was killed, want 0: %s", pr.failed(), pr.sent(), pr.summary())
		}
		if after.Addr != victim.Addr {
			t.Errorf("the restarted replica listens on %s, want its old address %s", after.Addr, victim.Addr)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("kill every replica", func(t *testing.T) {
		before := readyReplicas(ctx, t, h, stable, 2)
		pr := startProber(ctx, h, 20*time.Millisecond, 3000)
		defer pr.stop()
		time.Sleep(300 * time.Millisecond)
		var killed time.Time
		for _, r := range before {
			killed = killPID(t, r.PID)
		}
		first, ok := pr.firstSuccessSince(ctx, killed, 30*time.Second)
		if !ok {
			t.Fatalf("no probe succeeded within 30s of killing every replica: %s", pr.summary())
		}
		for _, r := range before {
			waitReplicaBack(ctx, t, h, stable, r, killed)
		}
		time.Sleep(500 * time.Millisecond)
		pr.stop()
		lateFailures := 0
		for _, p := range pr.all() {
			if !p.ok() && p.sent.After(first.done) {
				lateFailures++
			}
		}
		t.Logf("kill -9 of every replica: first answer %s after the kill; probes sent %d, failed %d (%d after the first answer) %v",
			first.done.Sub(killed).Round(time.Millisecond), pr.sent(), pr.failed(), lateFailures, pr.counts())
		if lateFailures > 0 {
			t.Errorf("%d probes failed after the first replica was back, want failures only until the first restart: %s", lateFailures, pr.summary())
		}
	})
	if t.Failed() {
		return
	}

	t.Run("kill postgres", func(t *testing.T) {
		before := readyReplicas(ctx, t, h, stable, 2)
		pid := postmaster(t, h, manifest.ProductionEnv)
		pr := startProber(ctx, h, 20*time.Millisecond, 3000)
		defer pr.stop()
		time.Sleep(300 * time.Millisecond)
		killed := killPID(t, pid)
		var again int
		for i := 0; ; i++ {
			if again = postmasterOrZero(h, manifest.ProductionEnv); again != 0 && again != pid {
				break
			}
			if i == 600 {
				t.Fatalf("no PostgreSQL server ran again for production within 30s of killing pid %d", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
		restarted := time.Since(killed)
		first, ok := pr.firstSuccessSince(ctx, killed.Add(restarted), 30*time.Second)
		if !ok {
			t.Fatalf("the app did not answer within 30s of its database coming back: %s", pr.summary())
		}
		time.Sleep(500 * time.Millisecond)
		pr.stop()
		t.Logf("kill -9 of production's PostgreSQL (pid %d): running again as pid %d after %s, the app answering again %s after the kill; probes sent %d, failed %d %v",
			pid, again, restarted.Round(time.Millisecond), first.done.Sub(killed).Round(time.Millisecond), pr.sent(), pr.failed(), pr.counts())
		after := readyReplicas(ctx, t, h, stable, 2)
		for i := range after {
			if after[i].PID != before[i].PID {
				t.Errorf("replica %d was restarted (pid %d, was %d): the app must recover from its database's restart by itself", i, after[i].PID, before[i].PID)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("exit at once", func(t *testing.T) {
		pr := startProber(ctx, h, 50*time.Millisecond, 6000)
		defer pr.stop()
		sha, err := h.CommitChange(ctx, "exit-at-once", "a process that exits at once")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.Push(ctx, "main", sha, "exit at once")
		if err != nil || resp.Status != 202 {
			t.Fatalf("push: %+v, %v", resp, err)
		}
		// The staging environment's replicas as the API shows them while
		// the supervisor restarts them.
		var seen runtime.ReplicaStatus
		var p *pipeline.Pipeline
		for i := 0; ; i++ {
			if p, err = h.Pipeline(ctx, resp.Pipeline); err != nil {
				t.Fatal(err)
			}
			if p.StagingEnv != "" {
				if st := replicaHealth(ctx, h, p.StagingEnv); len(st) > 0 {
					for _, r := range st {
						if r.Restarts > seen.Restarts {
							seen = r
						}
					}
				}
			}
			if p.Phase == pipeline.Succeeded || p.Phase == pipeline.Failed {
				break
			}
			if i == 3000 {
				t.Fatalf("pipeline %s did not end within 5 minutes", p.ID)
			}
			time.Sleep(100 * time.Millisecond)
		}
		pr.stop()
		t.Logf("exit-at-once: pipeline %s %s at %s: %s; the API showed a replica %s with %d restarts, last exit %q, next start %s; production probes %v",
			p.ID, p.Phase, p.FailedStep, oneLine(p.Reason), seen.State, seen.Restarts, seen.LastExit, seen.NextStart.Format(time.RFC3339Nano), pr.counts())
		if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitDeploy {
			t.Errorf("pipeline ended %s at %q, want Failed at %s", p.Phase, p.FailedStep, pipeline.StepAwaitDeploy)
		}
		if !strings.Contains(p.Reason, "exit status 2") {
			t.Errorf("the failure does not say how the process ended (exit status 2): %s", p.Reason)
		}
		if seen.Restarts < 2 || seen.LastExit != "exit status 2" {
			t.Errorf("the API never showed a replica restarted at least twice with its last exit: %+v", seen)
		}
		if pr.failed() != 0 {
			t.Errorf("%d production probes failed: %s", pr.failed(), pr.summary())
		}
		assertProduction(ctx, t, h, "pong", stable)
		assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	})
	if t.Failed() {
		return
	}

	t.Run("canary crashes", func(t *testing.T) {
		// A long first pause: the rollout must be aborted by the canary's
		// health, not promoted before the crashes add up.
		spec := canarySpec(`    steps:
      - setWeight: 20
      - pause: {duration: 3m}
      - setWeight: 100
`)
		sha := commitCanary(ctx, t, h, "crash-in-production", spec, successRateTemplate("", ""))
		resp, err := h.Push(ctx, "main", sha, "crashes in production")
		if err != nil || resp.Status != 202 {
			t.Fatalf("push: %+v, %v", resp, err)
		}
		p, err := h.WaitPipeline(ctx, resp.Pipeline, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("crash-in-production: pipeline %s %s at %s: %s", p.ID, p.Phase, p.FailedStep, oneLine(p.Reason))
		if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitRollout {
			t.Fatalf("pipeline ended %s at %q, want Failed at %s", p.Phase, p.FailedStep, pipeline.StepAwaitRollout)
		}
		if !strings.Contains(p.Reason, "crash") {
			t.Errorf("the failure does not say the canary crash-looped: %s", p.Reason)
		}
		assertProduction(ctx, t, h, "pong", stable)
		assertGitProduction(ctx, t, h, stable)
		if vs := versionsRunning(ctx, h, manifest.ProductionEnv); !slices.Equal(vs, []string{stable}) {
			t.Errorf("production runs %v after the abort, want only %s", vs, stable)
		}
	})
}

// replicaHealth is what the API says of the app's replicas in env.
func replicaHealth(ctx context.Context, h *harness.Harness, env string) []runtime.ReplicaStatus {
	var e environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments/"+env, &e); err != nil {
		return nil
	}
	if a := appOf(&e, harness.AppName); a != nil {
		return a.Health
	}
	return nil
}

// versionsRunning lists the versions of the app the API shows in env.
func versionsRunning(ctx context.Context, h *harness.Harness, env string) []string {
	var e environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments/"+env, &e); err != nil {
		return nil
	}
	var out []string
	for _, a := range e.Apps {
		if a.Name == harness.AppName && a.Version != "" {
			out = append(out, a.Version)
		}
	}
	return out
}

// readyReplicas waits until production shows n ready, running replicas of
// version and returns them, by index.
func readyReplicas(ctx context.Context, t *testing.T, h *harness.Harness, version string, n int) []runtime.ReplicaStatus {
	t.Helper()
	for i := 0; ; i++ {
		var e environment.EnvStatus
		if err := h.GetJSON(ctx, "/api/v1/environments/"+manifest.ProductionEnv, &e); err == nil {
			if a := appOf(&e, harness.AppName); a != nil && a.Version == version && len(a.Health) == n &&
				!slices.ContainsFunc(a.Health, func(r runtime.ReplicaStatus) bool { return !r.Ready || r.PID == 0 }) {
				return a.Health
			}
		}
		if i == 600 {
			t.Fatalf("production did not show %d ready replicas of %s within 60s: %+v", n, version, replicaHealth(ctx, h, manifest.ProductionEnv))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReplicaBack waits until the API shows replica r of version restarted
// (another pid, one more restart) and ready again.
func waitReplicaBack(ctx context.Context, t *testing.T, h *harness.Harness, version string, r runtime.ReplicaStatus, killed time.Time) runtime.ReplicaStatus {
	t.Helper()
	for i := 0; ; i++ {
		for _, now := range replicaHealth(ctx, h, manifest.ProductionEnv) {
			if now.Index == r.Index && now.PID != 0 && now.PID != r.PID && now.Ready && now.Restarts > r.Restarts {
				return now
			}
		}
		if i == 3000 {
			t.Fatalf("replica %d (pid %d) of %s was not back within 30s of %s: %+v", r.Index, r.PID, version, killed.Format(time.TimeOnly),
				replicaHealth(ctx, h, manifest.ProductionEnv))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killPID sends SIGKILL to pid, after checking it names a running process,
// and returns when it did.
func killPID(t *testing.T, pid int) time.Time {
	t.Helper()
	st, err := procfs.Read(pid)
	if err != nil || st.Exited() {
		t.Fatalf("process %d is not running: %v", pid, err)
	}
	if err := procfs.Signal(pid, st.StartTime, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %d: %v", pid, err)
	}
	return time.Now()
}

// postmaster is the pid of env's PostgreSQL server.
func postmaster(t *testing.T, h *harness.Harness, env string) int {
	t.Helper()
	pid := postmasterOrZero(h, env)
	if pid == 0 {
		t.Fatalf("no PostgreSQL server runs for %s", env)
	}
	return pid
}

// postmasterOrZero finds the postmaster whose data dir is env's (its
// children's command lines are "postgres: ..."), or 0.
func postmasterOrZero(h *harness.Harness, env string) int {
	want := []byte(filepath.Join(h.WorkDir(), "envs", env) + "/")
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if filepath.Base(string(argv0)) != "postgres" || !bytes.Contains(cmdline, want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(p))
		if st, serr := procfs.Read(pid); err == nil && serr == nil && !st.Exited() && !forkedBackend(st, cmdline) {
			return pid
		}
	}
	return 0
}

// forkedBackend reports whether a process with a postmaster's command line
// is a backend just forked by it (it keeps its parent's command line until
// it retitles itself "postgres: ..."), not a server of its own.
func forkedBackend(st procfs.Stat, cmdline []byte) bool {
	parent, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PPID))
	return bytes.Equal(parent, cmdline)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return fmt.Sprint(s)
}
