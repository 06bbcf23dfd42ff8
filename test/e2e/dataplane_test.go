package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/gatewayproc"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/test/harness"
)

// recoverDeadline bounds every wait for the data plane or the controller to
// come back. It is a deadline, not an assertion on how fast they are.
const recoverDeadline = 30 * time.Second

// TestGatewayKilled kills the gateway process with SIGKILL three times while
// a prober sends a request to production every 20 ms: each time the control
// plane must start a new gateway on the same address, with production's
// routes, and no second gateway may be left running. The gap from the kill
// to the first answer of a probe sent after it is measured and logged.
func TestGatewayKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, _, _ := startRunwayWith(ctx, t, harness.Options{})
	stable := deployFirstVersion(ctx, t, h)
	gwAddr := h.GatewayAddr()

	pr := startProber(ctx, h, 20*time.Millisecond, 5000)
	defer pr.stop()
	var gaps []time.Duration
	for i := 1; i <= 3; i++ {
		killed, err := h.KillGateway()
		if err != nil {
			t.Fatal(err)
		}
		killedAt := time.Now()
		res, ok := pr.firstSuccessSince(ctx, killedAt, recoverDeadline)
		if !ok {
			t.Fatalf("kill %d: the gateway did not answer within %s of SIGKILL to process %d; probes: %s", i, recoverDeadline, killed.PID, pr.summary())
		}
		gaps = append(gaps, res.done.Sub(killedAt))
		if res.version != stable {
			t.Fatalf("kill %d: the restarted gateway answered from version %q, want %s", i, res.version, stable)
		}
		if h.GatewayAddr() != gwAddr {
			t.Fatalf("kill %d: gateway moved from %s to %s", i, gwAddr, h.GatewayAddr())
		}
		rec := waitGatewayRecord(t, h, killed.PID)
		if rec.Listen != gwAddr {
			t.Fatalf("kill %d: the restarted gateway listens on %s, want %s", i, rec.Listen, gwAddr)
		}
		assertProduction(ctx, t, h, "pong", stable)
		assertOneGateway(t, h, rec.PID)
		t.Logf("kill %d: gateway %d killed, %d answered after %s", i, killed.PID, rec.PID, gaps[len(gaps)-1].Round(time.Millisecond))
	}
	pr.stop()

	var parts []string
	for _, g := range gaps {
		parts = append(parts, g.Round(time.Millisecond).String())
	}
	t.Logf("gateway restart gap: %s (n=%d, max %s); probes sent %d, failed %d; answers %v",
		strings.Join(parts, ", "), len(gaps), slices.Max(gaps).Round(time.Millisecond), pr.sent(), pr.failed(), pr.counts())
	for k, n := range pr.counts() {
		if strings.HasSuffix(k, "/200") && k != stable+"/200" {
			t.Errorf("%d probes were answered by version %s, want only %s", n, k, stable)
		}
	}
}

// TestStateRepoUnreadable makes the state repository unreadable for a
// while, first by taking it away and then by corrupting it. Meanwhile the
// environment controller keeps reconciling (every second) and failing to
// read it: nothing may be torn down, production keeps answering every
// probe, and once the repository is back reconciliation resumes: a staging
// environment committed to it is created and, when its manifest is
// deleted, removed.
func TestStateRepoUnreadable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, dir, logBuf := startRunwayWith(ctx, t, harness.Options{Tune: func(cfg *server.Config) {
		cfg.PollInterval.Duration = time.Second
	}})
	stable := deployFirstVersion(ctx, t, h)
	replicas := replicaAddrs(ctx, h, "production")
	slices.Sort(replicas)
	if len(replicas) == 0 {
		t.Fatal("no production replicas listed")
	}

	pr := startProber(ctx, h, 20*time.Millisecond, 20000)
	defer pr.stop()

	tests := []struct {
		name string
		env  string // the staging environment committed once the repo is back
		// unreadable makes the state repository unreadable and returns
		// what restores it.
		unreadable func(t *testing.T, repo string) (restore func())
	}{
		{name: "remote gone", env: "back-after-gone", unreadable: removeRepo},
		{name: "corrupt", env: "back-after-corrupt", unreadable: corruptRepo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failuresBefore := strings.Count(logBuf.String(), readFailure)
			restore := tt.unreadable(t, h.StateURL)
			restored := false
			defer func() {
				if !restored {
					restore()
				}
			}()
			// Two failed passes at least: one may have started before the
			// repo went away.
			waitLog(ctx, t, logBuf, readFailure, failuresBefore+2)
			assertProductionIntact(ctx, t, h, stable, replicas)
			if failed := pr.failed(); failed != 0 {
				t.Fatalf("%d probes to production failed while the state repo was unreadable: %v", failed, pr.counts())
			}
			t.Logf("state repo unreadable: %d reconcile passes failed, production untouched; probes so far %v; controller's log: %s",
				strings.Count(logBuf.String(), readFailure)-failuresBefore, pr.counts(), nthLine(logBuf.String(), readFailure, failuresBefore))

			// A control plane started during the outage adopts the data
			// plane and lists what the gateway serves, marked adopted.
			if err := h.Restart(ctx); err != nil {
				t.Fatalf("restarting the control plane during the outage: %v", err)
			}
			prod := waitEnv(ctx, t, h, manifest.ProductionEnv, func(e *environment.EnvStatus) bool { return e != nil })
			if !prod.Adopted {
				t.Errorf("production after a restart during the outage: %+v, want it marked adopted", prod)
			}
			assertProductionIntact(ctx, t, h, stable, replicas)

			restore()
			restored = true
			testReconcileResumes(ctx, t, h, dir, tt.env, stable)
			assertProductionIntact(ctx, t, h, stable, replicas)
		})
	}
	pr.stop()
	t.Logf("probes to production during the test: sent %d, failed %d: %v", pr.sent(), pr.failed(), pr.counts())
	for k, n := range pr.counts() {
		if k != stable+"/200" {
			t.Errorf("%d probes to production answered %s", n, k)
		}
	}
}

// readFailure is what the environment controller logs when it cannot read
// the state repository.
const readFailure = "reading state repo (nothing changed)"

// removeRepo takes the bare state repository away, as if its remote were
// gone.
func removeRepo(t *testing.T, repo string) func() {
	t.Helper()
	away := repo + ".away"
	if err := os.Rename(repo, away); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(away, repo); err != nil {
			t.Errorf("restoring the state repo: %v", err)
		}
	}
}

// corruptRepo overwrites the bare state repository's branch ref and every
// object file with garbage, keeping a copy of the repository to restore.
// HEAD is left alone, so git still takes it for a repository (a garbage
// HEAD reads as "repository not found", the same as a missing one).
func corruptRepo(t *testing.T, repo string) func() {
	t.Helper()
	backup := repo + ".backup"
	if err := os.CopyFS(backup, os.DirFS(repo)); err != nil {
		t.Fatal(err)
	}
	garbage := []byte("\x00\xffgarbage\n")
	files := []string{filepath.Join(repo, "refs", "heads", "main"), filepath.Join(repo, "packed-refs")}
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		// Object files are read-only; replace them rather than write.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, garbage, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		if err := os.RemoveAll(repo); err != nil {
			t.Errorf("removing the corrupt state repo: %v", err)
			return
		}
		if err := os.Rename(backup, repo); err != nil {
			t.Errorf("restoring the state repo: %v", err)
		}
	}
}

// testReconcileResumes commits a staging environment (production's
// manifest under another name) to the state repository and waits until it
// runs and answers through the gateway; then it deletes the manifest and
// waits until the environment has gone without a trace.
func testReconcileResumes(ctx context.Context, t *testing.T, h *harness.Harness, dir, env, version string) {
	t.Helper()
	repo, m := gitProduction(ctx, t, h)
	m.EnvName, m.DeployingWorkflowName = env, ""
	m.ChangeDescription = "state repo back: reconciliation resumes"
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := repo.Commit(ctx, "add "+env, gitops.Change{Path: manifest.StagingPath(env), Data: data}); err != nil {
		t.Fatal(err)
	}
	st := waitEnv(ctx, t, h, env, func(e *environment.EnvStatus) bool {
		a := appOf(e, harness.AppName)
		return a != nil && a.Version == version && len(a.Replicas) > 0 && a.URL != ""
	})
	u, err := url.Parse(appOf(st, harness.AppName).HostURL)
	if err != nil {
		t.Fatal(err)
	}
	assertPlainClientsReach(ctx, t, appOf(st, harness.AppName).URL, version)
	// Its replicas answer through the gateway. Not necessarily "pong":
	// nobody ran the migrations in its fresh database (a pipeline would),
	// so the app may answer 500 "database error"; the version header shows
	// the answer came from the new environment's replicas.
	for i := 0; ; i++ {
		status, body, v, err := h.Get(ctx, u.Hostname(), "/ping")
		if err == nil && v == version && (status == http.StatusOK || strings.Contains(body, "database")) {
			break
		}
		if i == 100 {
			t.Fatalf("environment %s does not answer through the gateway: %d %q from %q, %v", env, status, body, v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("reconciliation resumed: environment %s committed and answering after %s", env, time.Since(start).Round(time.Millisecond))

	if _, err := repo.Commit(ctx, "remove "+env, gitops.Change{Path: manifest.StagingPath(env), Delete: true}); err != nil {
		t.Fatal(err)
	}
	waitEnv(ctx, t, h, env, func(e *environment.EnvStatus) bool { return e == nil })
	assertEnvGone(ctx, t, h, dir, env)
}

// assertPlainClientsReach checks that an environment's URL, as the API
// shows it and jobs get it in RUNWAY_APP_URL, works with clients that know
// nothing of Runway: Go's http.Get and curl, as they are. Not necessarily
// "pong" (see testReconcileResumes): the version header says which
// replicas answered.
func assertPlainClientsReach(ctx context.Context, t *testing.T, appURL, version string) {
	t.Helper()
	resp, err := http.Get(appURL + "/ping")
	if err != nil {
		t.Fatalf("plain http.Get of the environment URL %s: %v", appURL, err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("X-Runway-Version"); v != version {
		t.Errorf("plain http.Get of %s answered %d from version %q, want %s", appURL, resp.StatusCode, v, version)
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Logf("no curl on this machine: the environment URL was checked with Go's client only")
		return
	}
	out, err := exec.CommandContext(ctx, curl, "-sS", "-o", "/dev/null", "-D", "-", appURL+"/ping").CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s/ping: %v: %s", appURL, err, out)
	}
	if !strings.Contains(strings.ToLower(string(out)), "x-runway-version: "+strings.ToLower(version)) {
		t.Errorf("curl %s/ping: answer headers %q do not name version %s", appURL, out, version)
	}
}

// assertProductionIntact checks that the API still lists production with
// the app at version and the same replicas, that those replicas still
// listen and that production answers through the gateway.
func assertProductionIntact(ctx context.Context, t *testing.T, h *harness.Harness, version string, replicas []string) {
	t.Helper()
	var envs []environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range envs {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{manifest.ProductionEnv}) {
		t.Fatalf("the API lists environments %v, want only production", names)
	}
	if a := appOf(&envs[0], harness.AppName); a == nil || a.Version != version {
		t.Fatalf("production lists %s as %+v, want version %s", harness.AppName, a, version)
	}
	got := replicaAddrs(ctx, h, manifest.ProductionEnv)
	slices.Sort(got)
	if !slices.Equal(got, replicas) {
		t.Fatalf("production replicas %v became %v", replicas, got)
	}
	for _, addr := range replicas {
		if !harness.Listening(addr) {
			t.Fatalf("production replica %s no longer listens", addr)
		}
	}
	assertProduction(ctx, t, h, "pong", version)
}

// waitEnv polls the API until ok holds for environment env (nil when the
// API does not list it) and returns it.
func waitEnv(ctx context.Context, t *testing.T, h *harness.Harness, env string, ok func(*environment.EnvStatus) bool) *environment.EnvStatus {
	t.Helper()
	deadline := time.Now().Add(recoverDeadline)
	for {
		var envs []environment.EnvStatus
		if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
			t.Fatal(err)
		}
		var found *environment.EnvStatus
		for i := range envs {
			if envs[i].Name == env {
				found = &envs[i]
			}
		}
		if ok(found) {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("environment %s never reached the expected state within %s; last seen: %+v", env, recoverDeadline, found)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func appOf(e *environment.EnvStatus, app string) *environment.AppStatus {
	if e == nil {
		return nil
	}
	for i := range e.Apps {
		if e.Apps[i].Name == app {
			return &e.Apps[i]
		}
	}
	return nil
}

// waitLog waits until the log holds at least n lines with substr.
func waitLog(ctx context.Context, t *testing.T, log *logbuf.Buffer, substr string, n int) {
	t.Helper()
	deadline := time.Now().Add(recoverDeadline)
	for strings.Count(log.String(), substr) < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the log has %d lines with %q after %s, want %d", strings.Count(log.String(), substr), substr, recoverDeadline, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nthLine returns the line of s with the n-th (from 0) occurrence of
// substr.
func nthLine(s, substr string, n int) string {
	for line := range strings.Lines(s) {
		if !strings.Contains(line, substr) {
			continue
		}
		if n == 0 {
			return strings.TrimSpace(line)
		}
		n--
	}
	return ""
}

// waitGatewayRecord waits until the gateway record names another process
// than old (the supervisor writes it right after the restart).
func waitGatewayRecord(t *testing.T, h *harness.Harness, old int) gatewayproc.Record {
	t.Helper()
	deadline := time.Now().Add(recoverDeadline)
	for {
		rec, err := h.GatewayRecord()
		if err == nil && rec.PID != old {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway record still names process %d (or cannot be read: %v)", old, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertOneGateway checks that exactly one gateway process runs for the
// harness's data dir, and that it is pid.
func assertOneGateway(t *testing.T, h *harness.Harness, pid int) {
	t.Helper()
	if got := harness.GatewayProcesses(h.DataDir()); !slices.Equal(got, []int{pid}) {
		t.Fatalf("gateway processes of %s: %v, want exactly [%d]", h.DataDir(), got, pid)
	}
}

// deployFirstVersion deploys the example app's first version to production
// and returns its version.
func deployFirstVersion(ctx context.Context, t *testing.T, h *harness.Harness) string {
	t.Helper()
	sha, err := h.CommitChange(ctx, "", "deploy the first version")
	if err != nil {
		t.Fatal(err)
	}
	p := runPipeline(ctx, t, h, sha, "first version")
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("first version: pipeline %s: %s at %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
	}
	assertProduction(ctx, t, h, "pong", p.Version)
	return p.Version
}

// prober sends GET /ping to production through the gateway at a fixed
// interval, at most limit times, and keeps every result.
type prober struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	results []probe
	cond    chan struct{} // closed and replaced on every new result
}

type probe struct {
	sent, done time.Time
	status     int
	version    string
	err        error
}

func (p probe) ok() bool { return p.err == nil && p.status == http.StatusOK }

func (p probe) key() string {
	if p.err != nil {
		return "error"
	}
	return fmt.Sprintf("%s/%d", p.version, p.status)
}

func startProber(ctx context.Context, h *harness.Harness, every time.Duration, limit int) *prober {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	pr := &prober{cancel: cancel, done: make(chan struct{}), cond: make(chan struct{})}
	// Its own client: a short timeout so a probe caught by a dying gateway
	// fails fast instead of holding up the next ones.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	go func() {
		defer close(pr.done)
		defer client.CloseIdleConnections()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range limit {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			res := probe{sent: time.Now()}
			res.status, res.version, res.err = get(ctx, client, h.GatewayAddr(), h.ProductionHost())
			res.done = time.Now()
			if ctx.Err() != nil {
				return // stopped mid-request: not an answer
			}
			pr.mu.Lock()
			pr.results = append(pr.results, res)
			close(pr.cond)
			pr.cond = make(chan struct{})
			pr.mu.Unlock()
		}
	}()
	return pr
}

func get(ctx context.Context, client *http.Client, addr, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ping", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Runway-Version"), nil
}

// stop ends the probing; it may be called more than once.
func (pr *prober) stop() {
	pr.cancel()
	<-pr.done
}

// firstSuccessSince waits until a probe sent at or after since succeeds and
// returns it; it gives up after wait or when the prober has stopped.
func (pr *prober) firstSuccessSince(ctx context.Context, since time.Time, wait time.Duration) (probe, bool) {
	timeout := time.After(wait)
	seen, stopped := 0, false
	for {
		pr.mu.Lock()
		for _, r := range pr.results[seen:] {
			if !r.sent.Before(since) && r.ok() {
				pr.mu.Unlock()
				return r, true
			}
		}
		seen = len(pr.results)
		cond := pr.cond
		pr.mu.Unlock()
		if stopped {
			return probe{}, false
		}
		select {
		case <-cond:
		case <-pr.done:
			stopped = true // look at the last results once more
		case <-timeout:
			return probe{}, false
		case <-ctx.Done():
			return probe{}, false
		}
	}
}

// all is every probe's result so far.
func (pr *prober) all() []probe {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.results)
}

func (pr *prober) sent() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.results)
}

func (pr *prober) failed() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	n := 0
	for _, r := range pr.results {
		if !r.ok() {
			n++
		}
	}
	return n
}

// counts are the probes' answers by "version/status", or "error".
func (pr *prober) counts() map[string]int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := map[string]int{}
	for _, r := range pr.results {
		out[r.key()]++
	}
	return out
}

func (pr *prober) summary() string {
	return fmt.Sprintf("sent %d, failed %d: %v", pr.sent(), pr.failed(), pr.counts())
}
