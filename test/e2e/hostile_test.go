package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the store, read-only, for its row counts

	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/internal/webhook"
	"github.com/runway-cd/runway/test/harness"
)

// hostileAuthor is the author of the commits the test makes itself; Runway
// commits as "Runway".
const hostileAuthor = "Hostile input"

// TestHostileInputs sends one Runway a table of hostile inputs across its
// webhook, API, reporter, gateway admin socket, state repository, app spec
// and AnalysisTemplates. Each row asserts the answer (status and message;
// for a commit to a repository, what the pipeline or the reconciler made
// of it) and, through a snapshot taken before and after it, that nothing
// else changed: no pipeline, no state repo commit, no process, no route,
// no environment, no rollout step and no store row, except what the row
// declares it may create.
//
// Production runs the first version before the rows start. The API,
// gateway and reporter rows aim at a canary paused at 20% in production
// and at its pipeline's reporter expectation, so a row that got through
// would move a live rollout.
func TestHostileInputs(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	h, _, logBuf := startRunwayWith(ctx, t, harness.Options{Tune: func(c *server.Config) {
		c.PollInterval.Duration = time.Second // state repo rows wait for reconcile passes
	}})
	x := newRig(ctx, t, h, logBuf)
	x.deployFirst(t)

	total := 0
	run := func(surface string, rows []hostileRow) {
		t.Run(surface, func(t *testing.T) {
			for _, r := range rows {
				t.Run(r.name, func(t *testing.T) { x.runRow(t, r) })
			}
		})
		total += len(rows)
	}
	run("webhook", x.webhookRows())
	run("app spec and AnalysisTemplate", x.specRows())
	x.resetApp(t)
	run("state repo", x.stateRows())

	baseline := x.snapshot(t) // production at its first version, nothing else running
	t.Logf("baseline: %d processes, %d pipelines, %d store tables, environments %s", len(baseline.procs), len(baseline.pipelines), len(baseline.tables), envsString(baseline.envs, false))
	x.startCanary(t)
	t.Run("state repo: Runway commits beside nul.json", x.checkCommitsBesideNul)
	x.removeNul(t) // Runway warns of it on every pass
	run("API", x.apiRows())
	run("gateway admin", x.gatewayRows())
	run("reporter", x.reporterRows())
	run("API abort", []hostileRow{x.abortRow(baseline)})

	t.Logf("%d hostile inputs in %s", total, time.Since(began).Round(time.Second))
	if total < 40 {
		t.Errorf("the table has %d rows, want at least 40", total)
	}
}

// hostileRow is one hostile input.
type hostileRow struct {
	name string
	// send delivers the input and returns the answer. For a commit to a
	// repository the answer has status 0 and, as body, what Runway logged
	// about it.
	send   func(t *testing.T) hostileAnswer
	status int
	want   []string // substrings of the answer's body
	may    mayChange
	// check makes further assertions once the answer is in (and waits for
	// what the row legitimately started to end).
	check func(t *testing.T, a hostileAnswer, before snapshot)
	// restore undoes the row's own commits after the snapshot after it.
	restore func(t *testing.T)
}

// mayChange is what a row may change; everything else must be equal.
type mayChange struct {
	pipelines int            // new pipelines, each ended
	rows      map[string]int // exact change of a table's row count
	// testCommits: the state repo may gain the row's own commits.
	testCommits bool
	// custom: the row's check compares the snapshots itself.
	custom bool
}

type hostileAnswer struct {
	status int
	body   string
	header http.Header
}

// rig is what the rows need of the Runway under test.
type rig struct {
	ctx    context.Context
	h      *harness.Harness
	log    *logbuf.Buffer
	client *http.Client // follows no redirect
	gw     *http.Client // the gateway's admin socket
	sock   string

	readToken   string
	first       *pipeline.Pipeline
	firstCommit string
	// firstBody and firstDelivery are the push that started first.
	firstBody     []byte
	firstDelivery string
	sideCommit    string // on branch side of the app repo, not on main
	otherToken    string // the token of an expectation the test submitted
	canary        *pipeline.Pipeline
	canaryToken   string // the token of the canary's production expectation
	nulCommit     string // the commit that planted nul.json in the state repo
	outside       string // where the symlinked manifests directory points
	secretLines   []string
}

func newRig(ctx context.Context, t *testing.T, h *harness.Harness, log *logbuf.Buffer) *rig {
	t.Helper()
	x := &rig{ctx: ctx, h: h, log: log, outside: t.TempDir()}
	x.client = &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(x.client.CloseIdleConnections)
	rec, err := h.GatewayRecord()
	if err != nil {
		t.Fatal(err)
	}
	x.sock = rec.Admin
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", x.sock)
	}}
	x.gw = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	if x.readToken, err = auth.ReadFile(auth.Path(h.DataDir(), auth.ReadToken)); err != nil {
		t.Fatal(err)
	}
	// A leak of a file a symlink points to would show one of these lines.
	for _, f := range []string{"/etc/shadow", "/etc/passwd", filepath.Join(h.DataDir(), "secret")} {
		if b, err := os.ReadFile(f); err == nil {
			if line, _, _ := strings.Cut(string(b), "\n"); len(line) >= 8 {
				x.secretLines = append(x.secretLines, line)
			}
		}
	}
	return x
}

// deployFirst deploys the first version, then prepares what the rows
// aim at: a commit on another branch of the app repo and a reporter
// expectation submitted through the API, with its token.
func (x *rig) deployFirst(t *testing.T) {
	t.Helper()
	sha, err := x.h.CommitChange(x.ctx, "", "deploy the first version")
	if err != nil {
		t.Fatal(err)
	}
	// Pushed here rather than with the harness, so that the rows can send
	// the same delivery again.
	x.firstBody = pushPayload(harness.RepoName, "refs/heads/main", sha, "https://github.com/"+harness.RepoName+".git")
	x.firstDelivery = randomHex(16)
	a := x.hook(t, x.firstBody, "X-GitHub-Delivery", x.firstDelivery)
	var resp struct{ Pipeline string }
	if err := json.Unmarshal([]byte(a.body), &resp); a.status != http.StatusAccepted || err != nil || resp.Pipeline == "" {
		t.Fatalf("push of the first version: %d %s", a.status, a.body)
	}
	p, err := x.h.WaitPipeline(x.ctx, resp.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("first version: pipeline %s %s at %s: %s\n%s", p.ID, p.Phase, p.FailedStep, p.Reason, stepTail(p))
	}
	assertProduction(x.ctx, t, x.h, "pong", p.Version)
	x.first, x.firstCommit = p, sha
	x.sideCommit = x.commitTo(t, x.h.AppURL, "main", "side", "a commit that is not on main", func(w string) {
		writeFile(t, filepath.Join(w, "side.txt"), "side\n")
	})
	a = x.call(t, "POST", "/workflow/submit", `{"WorkflowName":"hostile-staging","Apps":["homelabping"]}`,
		"Authorization", "Bearer "+x.h.Token(), "Content-Type", "application/json")
	if a.status != http.StatusOK {
		t.Fatalf("submitting an expectation: %d %s", a.status, a.body)
	}
	x.otherToken = x.expectationToken(t, "hostile-staging")
}

// stepTail is the end of the log of the step a pipeline failed at.
func stepTail(p *pipeline.Pipeline) string {
	if s := p.Step(p.FailedStep); s != nil {
		return harness.TailLines(s.Log, 30)
	}
	return ""
}

func (x *rig) expectationToken(t *testing.T, workflow string) string {
	t.Helper()
	var tok struct{ Token string }
	if err := x.h.GetJSON(x.ctx, "/api/v1/expectations/"+workflow+"/token", &tok); err != nil || tok.Token == "" {
		t.Fatalf("token of expectation %s: %q, %v", workflow, tok.Token, err)
	}
	return tok.Token
}

// startCanary pushes a change whose canary pauses at 20% until promoted
// and waits for that pause.
func (x *rig) startCanary(t *testing.T) {
	t.Helper()
	spec := canarySpec("    steps:\n      - setWeight: 20\n      - pause: {}\n")
	sha := commitCanary(x.ctx, t, x.h, "json-pong", spec, successRateTemplate("", "interval: 1s\n      count: 2"))
	resp, err := x.h.Push(x.ctx, "main", sha, "canary paused at 20%")
	if err != nil || resp.Status != http.StatusAccepted || resp.Pipeline == "" {
		t.Fatalf("push of the canary: %+v, %v", resp, err)
	}
	var st rollout.Status
	var p *pipeline.Pipeline
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if p, err = x.h.Pipeline(x.ctx, resp.Pipeline); err != nil {
			t.Fatal(err)
		}
		var paused bool
		if st, paused = activeRollout(x.ctx, x.h); paused && st.Phase == rollout.Paused && st.Weight == 20 {
			break
		}
		if p.Phase.Done() || time.Now().After(deadline) {
			msg := fmt.Sprintf("the canary never paused at 20%%: pipeline %s %s at %q: %s; rollout %+v", p.ID, p.Phase, p.FailedStep, p.Reason, st)
			t.Fatal(msg + "\n" + stepTail(p))
		}
	}
	x.canary = p
	x.canaryToken = x.expectationToken(t, p.ID+"-production")
	t.Logf("canary %s paused at 20%% (pipeline %s); %d processes of this Runway run now", st.CanaryVersion, p.ID, len(x.processes()))
}

// runRow takes the snapshots around one row and compares them.
func (x *rig) runRow(t *testing.T, r hostileRow) {
	before := x.snapshot(t)
	a := r.send(t)
	if a.status != r.status {
		t.Errorf("answer %d %s, want %d", a.status, strings.TrimSpace(a.body), r.status)
	}
	for _, w := range r.want {
		if !strings.Contains(a.body, w) {
			t.Errorf("answer %d %s does not say %q", a.status, strings.TrimSpace(a.body), w)
		}
	}
	if r.check != nil {
		r.check(t, a, before)
	}
	if !r.may.custom {
		after := x.snapshot(t)
		for _, d := range x.changes(t, before, after, r.may) {
			t.Errorf("changed: %s", d)
		}
	}
	if r.restore != nil {
		r.restore(t)
	}
}

// snapshot is what hostile input must not change.
type snapshot struct {
	pipelines map[string]string // id: phase and step phases
	stateHead string
	procs     map[string]string // pid@starttime: command line
	envs      []environment.EnvStatus
	routes    string // the gateway's routes and backend policy
	rollouts  []string
	tables    map[string]tableState
}

type tableState struct {
	rows int
	sum  string // of every row's content
}

func (x *rig) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{pipelines: map[string]string{}, procs: x.processes(), tables: x.tables(t)}
	var ps []*pipeline.Pipeline
	if err := x.h.GetJSON(x.ctx, "/api/v1/pipelines", &ps); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		var steps []string
		for _, st := range p.Steps {
			steps = append(steps, string(st.Phase))
		}
		s.pipelines[p.ID] = string(p.Phase) + " [" + strings.Join(steps, " ") + "]"
	}
	s.stateHead = x.git(t, "", "--git-dir", x.h.StateURL, "rev-parse", "refs/heads/main")
	if err := x.h.GetJSON(x.ctx, "/api/v1/environments", &s.envs); err != nil {
		t.Fatal(err)
	}
	var rs []rollout.Status
	if err := x.h.GetJSON(x.ctx, "/api/v1/rollouts", &rs); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		s.rollouts = append(s.rollouts, fmt.Sprintf("%s/%s %s over %s: %s step %d/%d weight %d finished %v analyses %d",
			r.Env, r.App, r.CanaryVersion, r.StableVersion, r.Phase, r.Step, r.Steps, r.Weight, !r.Finished.IsZero(), len(r.Analyses)))
	}
	sort.Strings(s.rollouts)
	for _, p := range []string{"/routes", "/policy"} {
		a := x.admin(t, "GET", p, "")
		if a.status != http.StatusOK {
			t.Fatalf("gateway admin GET %s: %d %s", p, a.status, a.body)
		}
		s.routes += a.body
	}
	return s
}

// processes are the processes of this Runway: the gateway, app replicas
// and jobs (they run from the work dir) and PostgreSQL servers (their data
// dir is on the command line). A server's own backends and helpers come
// and go with connections and are left out.
func (x *rig) processes() map[string]string {
	work := x.h.WorkDir() + "/"
	gateways := map[int]bool{}
	for _, pid := range harness.GatewayProcesses(x.h.DataDir()) {
		gateways[pid] = true
	}
	out := map[string]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if len(cmdline) == 0 || bytes.HasPrefix(cmdline, []byte("postgres: ")) {
			continue
		}
		// The background refill of ready PostgreSQL template copies runs
		// on its own schedule (after any environment start), not because
		// of an input.
		if bytes.Contains(cmdline, []byte("/postgres-templates/")) {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join(d, "cwd"))
		if !gateways[pid] && !bytes.Contains(cmdline, []byte(work)) && !strings.HasPrefix(cwd, work) {
			continue
		}
		st, err := procfs.Read(pid)
		if err != nil || st.Exited() {
			continue
		}
		// A PostgreSQL backend forked for a connection carries its
		// postmaster's command line until it retitles itself
		// ("postgres: ..."): a connection, not a new server.
		if parent, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PPID)); bytes.Equal(parent, cmdline) {
			continue
		}
		out[fmt.Sprintf("%d@%d", pid, st.StartTime)] = strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return out
}

// tables reads every table of the store, read-only: its row count and a
// sum of its content.
func (x *rig) tables(t *testing.T) map[string]tableState {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(x.h.DataDir(), "runway.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(x.ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("listing the store's tables: %v", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("the store has no tables")
	}
	out := map[string]tableState{}
	for _, n := range names {
		out[n] = tableContent(t, x.ctx, db, n)
	}
	return out
}

func tableContent(t *testing.T, ctx context.Context, db *sql.DB, name string) tableState {
	t.Helper()
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(name, `"`, `""`)+`" ORDER BY rowid`)
	if err != nil {
		t.Fatalf("reading table %s: %v", name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	sum := sha256.New()
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(sum, "%#v\n", vals)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return tableState{rows: n, sum: hex.EncodeToString(sum.Sum(nil))}
}

// changes lists what differs between before and after beyond what may
// allows.
func (x *rig) changes(t *testing.T, before, after snapshot, may mayChange) []string {
	t.Helper()
	var out []string
	var added []string
	for id, v := range after.pipelines {
		old, ok := before.pipelines[id]
		switch {
		case !ok:
			added = append(added, id+" "+v)
			if !pipeline.Phase(strings.Fields(v)[0]).Done() {
				out = append(out, fmt.Sprintf("new pipeline %s has not ended: %s", id, v))
			}
		case old != v:
			out = append(out, fmt.Sprintf("pipeline %s went from %s to %s", id, old, v))
		}
	}
	if len(added) != may.pipelines {
		out = append(out, fmt.Sprintf("%d new pipelines, want %d: %v", len(added), may.pipelines, added))
	}
	for id := range before.pipelines {
		if _, ok := after.pipelines[id]; !ok {
			out = append(out, "pipeline "+id+" is gone")
		}
	}
	if before.stateHead != after.stateHead {
		for _, c := range x.commits(t, before.stateHead, after.stateHead) {
			if !may.testCommits || c.author != hostileAuthor {
				out = append(out, fmt.Sprintf("state repo commit %.12s by %s: %q", c.sha, c.author, c.message))
			}
		}
	}
	out = append(out, diffProcs(before.procs, after.procs)...)
	if b, a := envsString(before.envs, false), envsString(after.envs, false); b != a {
		out = append(out, fmt.Sprintf("environments went from %s to %s", b, a))
	}
	if before.routes != after.routes {
		out = append(out, fmt.Sprintf("gateway routes went from %s to %s", before.routes, after.routes))
	}
	if !slices.Equal(before.rollouts, after.rollouts) {
		out = append(out, fmt.Sprintf("rollouts went from %q to %q", before.rollouts, after.rollouts))
	}
	out = append(out, diffTables(before.tables, after.tables, may.rows)...)
	return out
}

func diffProcs(before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if _, ok := before[k]; !ok {
			out = append(out, fmt.Sprintf("process %s started: %s", k, v))
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok {
			out = append(out, fmt.Sprintf("process %s ended: %s", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// diffTables compares the store's tables: a table in delta must have
// changed its row count by exactly that, any other must be unchanged, in
// count and in content.
func diffTables(before, after map[string]tableState, delta map[string]int) []string {
	var out []string
	for n := range delta {
		if _, ok := after[n]; !ok {
			out = append(out, "the store has no table "+n)
		}
	}
	for n, a := range after {
		b, ok := before[n]
		if !ok {
			out = append(out, "new store table "+n)
			continue
		}
		want, allowed := delta[n]
		switch {
		case a.rows-b.rows != want:
			out = append(out, fmt.Sprintf("store table %s went from %d to %d rows, want %+d", n, b.rows, a.rows, want))
		case !allowed && a.sum != b.sum:
			out = append(out, fmt.Sprintf("store table %s changed its content (%d rows)", n, a.rows))
		}
	}
	sort.Strings(out)
	return out
}

// envsString is the API's environments in a canonical form; afterAbort
// leaves out what an aborted canary explains: the version marked failed,
// and the workflow (production's manifest names the last pipeline that
// deployed, the aborted one).
func envsString(envs []environment.EnvStatus, afterAbort bool) string {
	var parts []string
	for _, e := range envs {
		var apps []string
		for _, a := range e.Apps {
			reps := slices.Clone(a.Replicas)
			sort.Strings(reps)
			failed := a.Failed
			if afterAbort {
				failed = ""
			}
			apps = append(apps, fmt.Sprintf("%s@%s %s %v failed=%q", a.Name, a.Version, a.URL, reps, failed))
		}
		sort.Strings(apps)
		workflow := e.Workflow
		if afterAbort {
			workflow = ""
		}
		parts = append(parts, fmt.Sprintf("%s(workflow %q adopted %v: %s)", e.Name, workflow, e.Adopted, strings.Join(apps, "; ")))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// gitCommit is a commit of the state repository.
type gitCommit struct {
	sha, author, trailers, message string
}

// commits lists the state repo's commits after from up to to, with the
// trailers git itself finds in their messages.
func (x *rig) commits(t *testing.T, from, to string) []gitCommit {
	t.Helper()
	out := x.git(t, "", "--git-dir", x.h.StateURL, "log", "--format=%H%x1f%an%x1f%(trailers:only,unfold)%x1f%B%x1e", from+".."+to)
	var cs []gitCommit
	for _, rec := range strings.Split(out, "\x1e") {
		f := strings.Split(strings.TrimLeft(rec, "\n"), "\x1f")
		if len(f) != 4 {
			continue
		}
		cs = append(cs, gitCommit{sha: f[0], author: f[1], trailers: strings.TrimSpace(f[2]), message: strings.TrimSpace(f[3])})
	}
	return cs
}

// git runs git in dir as the hostile author ("" dir: the current one).
func (x *rig) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	full := append([]string{"-c", "user.name=" + hostileAuthor, "-c", "user.email=hostile@localhost", "-c", "advice.detachedHead=false"}, args...)
	cmd := exec.CommandContext(x.ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commitTo clones branch of the bare repository url, lets edit change the
// work tree, commits everything there is as the hostile author and pushes
// it to branch push; it returns the commit.
func (x *rig) commitTo(t *testing.T, url, branch, push, message string, edit func(work string)) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "clone")
	x.git(t, "", "clone", "-q", "--branch", branch, url, work)
	edit(work)
	x.git(t, work, "add", "-A")
	x.git(t, work, "commit", "-q", "--allow-empty", "-m", message)
	x.git(t, work, "push", "-q", "origin", "HEAD:refs/heads/"+push)
	return x.git(t, work, "rev-parse", "HEAD")
}

// revertState reverts the state repo's head commit, which must be sha.
func (x *rig) revertState(t *testing.T, sha string) {
	t.Helper()
	if head := x.git(t, "", "--git-dir", x.h.StateURL, "rev-parse", "refs/heads/main"); head != sha {
		t.Fatalf("cannot restore the state repo: its head is %s, not the row's commit %s", head, sha)
	}
	work := filepath.Join(t.TempDir(), "clone")
	x.git(t, "", "clone", "-q", "--branch", "main", x.h.StateURL, work)
	x.git(t, work, "revert", "--no-edit", "HEAD")
	x.git(t, work, "push", "-q", "origin", "HEAD:refs/heads/main")
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// call sends a request to the API. hdr are header name, value pairs; a
// "Host" pair sets the request's Host.
func (x *rig) call(t *testing.T, method, path, body string, hdr ...string) hostileAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(x.ctx, method, x.h.APIURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return x.do(t, x.client, req)
}

func (x *rig) do(t *testing.T, c *http.Client, req *http.Request) hostileAnswer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return hostileAnswer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// admin sends a request to the gateway's admin socket.
func (x *rig) admin(t *testing.T, method, path, body string) hostileAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(x.ctx, method, "http://gateway"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return x.do(t, x.gw, req)
}

// pushPayload is a GitHub push event body.
func pushPayload(repo, ref, after, cloneURL string) []byte {
	b, err := json.Marshal(map[string]any{
		"ref": ref, "before": strings.Repeat("0", 40), "after": after, "deleted": false,
		"repository":  map[string]any{"name": filepath.Base(repo), "full_name": repo, "clone_url": cloneURL},
		"head_commit": map[string]any{"id": after, "message": "hostile"},
		"pusher":      map[string]any{"name": "mallory"},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func sign(secret string, payload []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hook posts payload to the webhook, signed with the secret as a push
// with a new delivery id; hdr pairs replace those headers ("" removes one).
func (x *rig) hook(t *testing.T, payload []byte, hdr ...string) hostileAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(x.ctx, http.MethodPost, x.h.APIURL()+"/webhooks/github", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", randomHex(16))
	req.Header.Set("X-Hub-Signature-256", sign(x.h.Secret, payload))
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return x.do(t, x.client, req)
}

// hookDeclaring sends only the headers of a signed-looking push whose
// declared body is length bytes, and reads the answer: a body over
// GitHub's limit is refused before it is read.
func (x *rig) hookDeclaring(t *testing.T, length int64) hostileAnswer {
	t.Helper()
	addr := strings.TrimPrefix(x.h.APIURL(), "http://")
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST /webhooks/github HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n"+
		"X-GitHub-Delivery: %s\r\nX-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n", addr, randomHex(16), randomHex(32), length)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to a %d-byte webhook: %v", length, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return hostileAnswer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (x *rig) webhookRows() []hostileRow {
	onMain := func(after string) []byte {
		return pushPayload(harness.RepoName, "refs/heads/main", after, "https://github.com/"+harness.RepoName+".git")
	}
	valid := x.firstBody
	sha1Sig := func(p []byte) string {
		mac := hmac.New(sha1.New, []byte(x.h.Secret))
		mac.Write(p)
		return "sha1=" + hex.EncodeToString(mac.Sum(nil))
	}
	row := func(name string, status int, want string, send func(t *testing.T) hostileAnswer) hostileRow {
		return hostileRow{name: name, send: send, status: status, want: []string{want}}
	}
	return []hostileRow{
		row("no signature", 401, "missing X-Hub-Signature-256", func(t *testing.T) hostileAnswer {
			return x.hook(t, valid, "X-Hub-Signature-256", "")
		}),
		row("signed with another secret", 401, "invalid signature", func(t *testing.T) hostileAnswer {
			return x.hook(t, valid, "X-Hub-Signature-256", sign("not the webhook secret at all", valid))
		}),
		row("signature of another body", 401, "invalid signature", func(t *testing.T) hostileAnswer {
			return x.hook(t, onMain(x.sideCommit), "X-Hub-Signature-256", sign(x.h.Secret, valid))
		}),
		row("sha1= prefix", 401, "malformed X-Hub-Signature-256", func(t *testing.T) hostileAnswer {
			return x.hook(t, valid, "X-Hub-Signature-256", sha1Sig(valid))
		}),
		row("only the SHA-1 X-Hub-Signature", 401, "missing X-Hub-Signature-256", func(t *testing.T) hostileAnswer {
			return x.hook(t, valid, "X-Hub-Signature-256", "", "X-Hub-Signature", sha1Sig(valid))
		}),
		row("malformed JSON, validly signed", 400, "invalid push payload", func(t *testing.T) hostileAnswer {
			return x.hook(t, []byte(`{"ref":"refs/heads/main","after":`))
		}),
		row("text/plain body", 415, "content type must be", func(t *testing.T) hostileAnswer {
			return x.hook(t, valid, "Content-Type", "text/plain")
		}),
		row("no delivery id", 400, "X-GitHub-Delivery", func(t *testing.T) hostileAnswer {
			return x.hook(t, valid, "X-GitHub-Delivery", "")
		}),
		row("after is a path, not 40 hex", 400, "is not a commit id", func(t *testing.T) hostileAnswer {
			return x.hook(t, onMain("../../../../etc/passwd"))
		}),
		row("after in upper case", 400, "is not a commit id", func(t *testing.T) hostileAnswer {
			return x.hook(t, onMain(strings.ToUpper(x.firstCommit)))
		}),
		row("ref with ..", 400, "contains '..'", func(t *testing.T) hostileAnswer {
			return x.hook(t, pushPayload(harness.RepoName, "refs/heads/../../main", x.firstCommit, ""))
		}),
		row("after not in the repository", 422, "is not in "+harness.RepoName, func(t *testing.T) hostileAnswer {
			return x.hook(t, onMain(randomHex(20)))
		}),
		row("after on another branch", 422, "is not on branch main", func(t *testing.T) hostileAnswer {
			return x.hook(t, onMain(x.sideCommit))
		}),
		// The state repo has that commit: only a verifier that trusted the
		// payload's clone_url would find it.
		row("clone_url naming another repository", 422, "is not in "+harness.RepoName, func(t *testing.T) hostileAnswer {
			head := x.git(t, "", "--git-dir", x.h.StateURL, "rev-parse", "refs/heads/main")
			return x.hook(t, pushPayload(harness.RepoName, "refs/heads/main", head, x.h.StateURL))
		}),
		row("untracked repository", 202, "is not tracked", func(t *testing.T) hostileAnswer {
			return x.hook(t, pushPayload("homelab/other", "refs/heads/main", x.firstCommit, ""))
		}),
		row("full_name ../../etc", 400, "is not owner/name", func(t *testing.T) hostileAnswer {
			return x.hook(t, pushPayload("../../etc", "refs/heads/main", x.firstCommit, ""))
		}),
		row("body over 25 MiB", 413, "webhook payload limit", func(t *testing.T) hostileAnswer {
			return x.hookDeclaring(t, webhook.MaxBody+1)
		}),
		row("redelivered delivery id", 200, `"status":"duplicate"`, func(t *testing.T) hostileAnswer {
			return x.hook(t, x.firstBody, "X-GitHub-Delivery", x.firstDelivery)
		}),
		row("replayed body under a new delivery id", 200, `"pipeline":"`+x.first.ID+`"`, func(t *testing.T) hostileAnswer {
			return x.hook(t, x.firstBody)
		}),
		row("replayed body, form-encoded, under a new delivery id", 200, `"pipeline":"`+x.first.ID+`"`, func(t *testing.T) hostileAnswer {
			form := []byte(url.Values{"payload": {string(x.firstBody)}}.Encode())
			return x.hook(t, form, "Content-Type", "application/x-www-form-urlencoded", "X-Hub-Signature-256", sign(x.h.Secret, form))
		}),
	}
}

// specRows each commit a hostile app spec or template and push it: the
// pipeline must fail at build-app, naming the file, the line and the
// field, before anything is built or staged.
func (x *rig) specRows() []hostileRow {
	spec := string(readExample("runway.yaml"))
	tmpl := string(readExample("analysis/maintain-success-rate.yaml"))
	const tmplPath = "analysis/maintain-success-rate.yaml"
	at := func(file, text, marker, field string) string {
		return fmt.Sprintf("%s:%d: %s", file, lineOf(text, marker), field)
	}
	row := func(name string, files, links map[string]string, wants ...string) hostileRow {
		return hostileRow{
			name: name, status: http.StatusAccepted, want: []string{`"status":"accepted"`},
			// The delivery is recorded under its id and its body's digest.
			may: mayChange{pipelines: 1, rows: map[string]int{"pipelines": 1, "webhook_deliveries": 2}},
			send: func(t *testing.T) hostileAnswer {
				sha := x.commitApp(t, name, files, links)
				return x.hook(t, pushPayload(harness.RepoName, "refs/heads/main", sha, ""))
			},
			check: func(t *testing.T, a hostileAnswer, _ snapshot) { x.buildFails(t, a, wants...) },
		}
	}

	unknown := strings.Replace(spec, "  replicas: 2\n", "  replicas: 2\n  replicaCount: 3\n", 1)
	undefined := strings.Replace(spec, "{templateName: maintain-success-rate}", "{templateName: no-such-template}", 1)
	shadow := spec + "  - analysis/shadow.yaml\n"
	outside := spec + "  - ../../data/secret\n"
	ssrf := strings.Replace(tmpl, "        prometheus:\n", "        prometheus:\n          address: http://169.254.169.254:80\n", 1)
	malformed := strings.Replace(tmpl, "  name: maintain-success-rate\n", "  name: [maintain-success-rate\n", 1)
	return []hostileRow{
		row("unknown field run.replicaCount", map[string]string{"runway.yaml": unknown}, nil,
			at("runway.yaml", unknown, "replicaCount", "run.replicaCount: unknown field")),
		row("undefined templateName", map[string]string{"runway.yaml": undefined}, nil,
			at("runway.yaml", undefined, "no-such-template", "strategy.canary.steps[2].analysis.templates[0].templateName"), "is not defined"),
		row("analysisTemplates entry a relative symlink to /etc/shadow", map[string]string{"runway.yaml": shadow},
			map[string]string{"analysis/shadow.yaml": strings.Repeat("../", 12) + "etc/shadow"},
			at("runway.yaml", shadow, "analysis/shadow.yaml", "analysisTemplates[1]"), "is a symlink"),
		row("analysisTemplates entry outside the repository", map[string]string{"runway.yaml": outside}, nil,
			at("runway.yaml", outside, "../../data/secret", "analysisTemplates[1]"), "is outside the repository"),
		row("runway.yaml a symlink to /etc/passwd", nil, map[string]string{"runway.yaml": "/etc/passwd"},
			"runway.yaml is a symlink"),
		row("prometheus.address not allow-listed", map[string]string{tmplPath: ssrf}, nil,
			at(tmplPath, ssrf, "address:", "spec.metrics[0].provider.prometheus.address"), "not one of the server's analysis.prometheusAddresses"),
		row("malformed template YAML", map[string]string{tmplPath: malformed}, nil, tmplPath+":"),
	}
}

func readExample(rel string) []byte {
	b, err := os.ReadFile(filepath.Join("../../examples/homelabping", rel))
	if err != nil {
		panic(err)
	}
	return b
}

// lineOf is the 1-based line of text where marker first appears.
func lineOf(text, marker string) int {
	i := strings.Index(text, marker)
	if i < 0 {
		panic("no " + marker)
	}
	return strings.Count(text[:i], "\n") + 1
}

// commitApp commits the example's spec and templates with files and
// symlinks over them (whatever an earlier row left) to the app repo's main.
func (x *rig) commitApp(t *testing.T, message string, files, links map[string]string) string {
	t.Helper()
	return x.commitTo(t, x.h.AppURL, "main", "main", message, func(w string) {
		for _, p := range []string{"analysis", "runway.yaml"} {
			if err := os.RemoveAll(filepath.Join(w, p)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.CopyFS(filepath.Join(w, "analysis"), os.DirFS("../../examples/homelabping/analysis")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(w, "runway.yaml"), string(readExample("runway.yaml")))
		for p, data := range files {
			writeFile(t, filepath.Join(w, p), data)
		}
		for p, target := range links {
			path := filepath.Join(w, p)
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// resetApp puts the example's spec and templates back on main.
func (x *rig) resetApp(t *testing.T) {
	t.Helper()
	x.commitApp(t, "back to the example's spec", nil, nil)
}

// buildFails waits for the pipeline a push started and checks that it
// failed at build-app saying wants, with nothing a symlink pointed to in
// its reason or logs.
func (x *rig) buildFails(t *testing.T, a hostileAnswer, wants ...string) {
	t.Helper()
	var resp struct{ Pipeline string }
	if err := json.Unmarshal([]byte(a.body), &resp); err != nil || resp.Pipeline == "" {
		t.Fatalf("no pipeline in the answer %s", a.body)
	}
	ctx, cancel := context.WithTimeout(x.ctx, 5*time.Minute)
	defer cancel()
	p, err := x.h.WaitPipeline(ctx, resp.Pipeline, nil)
	if err != nil {
		t.Fatalf("waiting for pipeline %s: %v", resp.Pipeline, err)
	}
	if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepBuildApp {
		t.Fatalf("pipeline %s ended %s at %q (%s), want Failed at %s", p.ID, p.Phase, p.FailedStep, p.Reason, pipeline.StepBuildApp)
	}
	for _, w := range wants {
		if !strings.Contains(p.Reason, w) {
			t.Errorf("reason %q does not say %q", p.Reason, w)
		}
	}
	if strings.HasSuffix(wants[len(wants)-1], ".yaml:") {
		if re := regexp.MustCompile(regexp.QuoteMeta(wants[len(wants)-1]) + `\d+: `); !re.MatchString(p.Reason) {
			t.Errorf("reason %q names no line of the file", p.Reason)
		}
	}
	texts := []string{p.Reason}
	for _, s := range p.Steps {
		texts = append(texts, s.Log, s.Error)
	}
	for _, text := range texts {
		for _, secret := range x.secretLines {
			if strings.Contains(text, secret) {
				t.Errorf("pipeline %s shows a line of a file outside the repository: %q", p.ID, secret)
			}
		}
		if strings.Contains(text, "connection refused") || strings.Contains(text, "dial tcp") {
			t.Errorf("pipeline %s tried to connect somewhere: %q", p.ID, text)
		}
	}
	t.Logf("pipeline %s: %s", p.ID, p.Reason)
}

// stateRows commit hostile content to the state repository and wait until
// the environment controller has read it twice (the first pass may have
// begun before the push); the answer is its log line about it. Every row
// but nul.json's is reverted afterwards.
func (x *rig) stateRows() []hostileRow {
	staging := "apps/staging/manifests/"
	manifestOf := func(env, app string) string {
		return fmt.Sprintf(`{"envname":%q,"apps":{%q:{"images":{"code":{"image":"homelabping","image_tag":"v1"}}}}}`, env, app)
	}
	row := func(name, evidence string, want []string, edit func(t *testing.T, work string), keep bool) hostileRow {
		var sha string
		r := hostileRow{
			name: name, want: want, may: mayChange{testCommits: true},
			send: func(t *testing.T) hostileAnswer {
				seen := strings.Count(x.log.String(), evidence)
				sha = x.commitTo(t, x.h.StateURL, "main", "main", name, func(w string) { edit(t, w) })
				waitLog(x.ctx, t, x.log, evidence, seen+2)
				return hostileAnswer{body: nthLine(x.log.String(), evidence, seen)}
			},
		}
		if keep {
			r.check = func(*testing.T, hostileAnswer, snapshot) { x.nulCommit = sha }
		} else {
			r.restore = func(t *testing.T) { x.revertState(t, sha) }
		}
		return r
	}
	return []hostileRow{
		// Kept: the canary's pipeline then commits beside it.
		row("staging manifest named nul.json", `msg="manifest invalid; environment left as it is" env=nul `,
			[]string{"reserved device name"}, func(t *testing.T, w string) {
				writeFile(t, filepath.Join(w, staging+"nul.json"), manifestOf("nul", "homelabping"))
			}, true),
		row("malformed JSON manifest", `msg="manifest invalid; environment left as it is" env=broken `,
			[]string{"decoding manifest"}, func(t *testing.T, w string) {
				writeFile(t, filepath.Join(w, staging+"broken.json"), `{"envname":"broken","apps":{`)
			}, false),
		row("manifest naming app ../x", `msg="manifest invalid; environment left as it is" env=evil `,
			[]string{"manifest app name"}, func(t *testing.T, w string) {
				writeFile(t, filepath.Join(w, staging+"evil.json"), manifestOf("evil", "../x"))
			}, false),
		row("production manifest a symlink to /etc/passwd", "apps/production/manifests/production.json is a symlink",
			[]string{"not a file"}, func(t *testing.T, w string) {
				p := filepath.Join(w, "apps/production/manifests/production.json")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/etc/passwd", p); err != nil {
					t.Fatal(err)
				}
			}, false),
		func() hostileRow {
			r := row("apps/staging/manifests a symlink out of the repo", "apps/staging/manifests is a symlink",
				[]string{"reading state repo (nothing changed)", "Runway reads only real directories"}, func(t *testing.T, w string) {
					dir := filepath.Join(w, "apps/staging/manifests")
					if err := os.RemoveAll(dir); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(x.outside, dir); err != nil {
						t.Fatal(err)
					}
				}, false)
			r.check = func(t *testing.T, _ hostileAnswer, _ snapshot) {
				if entries, err := os.ReadDir(x.outside); err != nil || len(entries) > 0 {
					t.Errorf("the directory the symlink points to holds %v (%v), want nothing", entries, err)
				}
			}
			return r
		}(),
	}
}

// checkCommitsBesideNul checks that Runway committed the canary's staging
// manifest next to nul.json, and left nul.json as it was.
func (x *rig) checkCommitsBesideNul(t *testing.T) {
	if x.nulCommit == "" {
		t.Fatal("nul.json was not committed")
	}
	head := x.git(t, "", "--git-dir", x.h.StateURL, "rev-parse", "refs/heads/main")
	files := x.git(t, "", "--git-dir", x.h.StateURL, "ls-tree", "-r", "--name-only", head, "apps/staging/manifests/")
	if !slices.Contains(strings.Fields(files), "apps/staging/manifests/nul.json") {
		t.Errorf("nul.json is gone from the state repo: %s", files)
	}
	staged := false
	for _, c := range x.commits(t, x.nulCommit, head) {
		if c.author == "Runway" && strings.HasPrefix(c.message, "stage "+harness.AppName+" "+x.canary.Version) {
			staged = true
		}
	}
	if !staged {
		t.Errorf("Runway made no staging commit for %s after nul.json", x.canary.Version)
	}
	if b, a := x.git(t, "", "--git-dir", x.h.StateURL, "rev-parse", x.nulCommit+":apps/staging/manifests/nul.json"),
		x.git(t, "", "--git-dir", x.h.StateURL, "rev-parse", head+":apps/staging/manifests/nul.json"); b != a {
		t.Errorf("Runway's commits changed nul.json from %s to %s", b, a)
	}
}

// removeNul deletes nul.json from the state repo.
func (x *rig) removeNul(t *testing.T) {
	t.Helper()
	x.commitTo(t, x.h.StateURL, "main", "main", "remove nul.json", func(w string) {
		if err := os.Remove(filepath.Join(w, "apps/staging/manifests/nul.json")); err != nil {
			t.Fatal(err)
		}
	})
}

func (x *rig) apiRows() []hostileRow {
	const jsonType = "application/json"
	rollouts := "/api/v1/rollouts/production/" + harness.AppName
	admin := "Bearer " + x.h.Token()
	read := "Bearer " + x.readToken
	wrong := "Bearer " + x.h.Token()[:len(x.h.Token())-1] + "x"
	row := func(name string, status int, want, method, path, body string, hdr ...string) hostileRow {
		return hostileRow{name: name, status: status, want: []string{want},
			send: func(t *testing.T) hostileAnswer { return x.call(t, method, path, body, hdr...) }}
	}
	preflight := row("OPTIONS preflight", 403, "cross-origin requests are not allowed", "OPTIONS", rollouts+"/promote", "",
		"Origin", "http://evil.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization")
	preflight.check = func(t *testing.T, a hostileAnswer, _ snapshot) {
		for k := range a.header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("the answer carries %s: %s", k, a.header.Get(k))
			}
		}
	}
	return []hostileRow{
		row("promote --full without a token", 401, "missing token", "POST", rollouts+"/promote?full=true", "", "Content-Type", jsonType),
		row("abort without a token", 401, "missing token", "POST", rollouts+"/abort", `{"reason":"x"}`, "Content-Type", jsonType),
		row("retry without a token", 401, "missing token", "POST", rollouts+"/retry", "", "Content-Type", jsonType),
		row("promote with the read token", 403, "needs the admin token", "POST", rollouts+"/promote?full=true", "", "Authorization", read, "Content-Type", jsonType),
		row("abort with the read token", 403, "needs the admin token", "POST", rollouts+"/abort", "", "Authorization", read, "Content-Type", jsonType),
		row("promote, admin token, form content type", 415, "Content-Type: application/json", "POST", rollouts+"/promote", "full=true",
			"Authorization", admin, "Content-Type", "application/x-www-form-urlencoded"),
		row("abort, admin token, text/plain", 415, "Content-Type: application/json", "POST", rollouts+"/abort", "x", "Authorization", admin, "Content-Type", "text/plain"),
		row("retry, admin token, no content type", 415, "Content-Type: application/json", "POST", rollouts+"/retry", "", "Authorization", admin),
		row("promote with a foreign Host", 421, "does not answer to that host name", "POST", rollouts+"/promote?full=true", "",
			"Authorization", admin, "Content-Type", jsonType, "Host", "evil.example"),
		row("read with a rebound Host", 421, "does not answer to that host name", "GET", "/api/v1/pipelines", "",
			"Authorization", read, "Host", "evil.example:"+portOf(x.h.APIURL())),
		preflight,
		row("admin token only in a cookie", 401, "missing token", "POST", rollouts+"/promote?full=true", "",
			"Cookie", "token="+x.h.Token()+"; runway_token="+x.h.Token(), "Content-Type", jsonType),
		row("wrong token", 401, "invalid token", "POST", rollouts+"/promote?full=true", "", "Authorization", wrong, "Content-Type", jsonType),
		row("admin token as Basic credentials", 401, "invalid token", "POST", rollouts+"/promote?full=true", "",
			"Authorization", "Basic "+x.h.Token(), "Content-Type", jsonType),
		row("a read and an admin Authorization header", 401, "invalid token", "POST", rollouts+"/promote?full=true", "",
			"Authorization", read, "Authorization", admin, "Content-Type", jsonType),
		row("reporter token as an API token", 401, "invalid token", "POST", rollouts+"/promote?full=true", "",
			"Authorization", "Bearer "+x.canaryToken, "Content-Type", jsonType),
		row("unknown app", 404, "no rollout in progress", "POST", "/api/v1/rollouts/production/nosuchapp/promote", "", "Authorization", admin, "Content-Type", jsonType),
		row("oversized abort body", 413, "request body over 65536 bytes", "POST", rollouts+"/abort",
			`{"reason":"`+strings.Repeat("x", 70<<10)+`"}`, "Authorization", admin, "Content-Type", jsonType),
		row("path traversal in the app name", 404, "no rollout in progress", "POST", "/api/v1/rollouts/production/..%2F..%2Fetc%2Fpasswd/promote", "",
			"Authorization", admin, "Content-Type", jsonType),
		row("path traversal in the env name", 404, "no rollout in progress", "POST", "/api/v1/rollouts/..%2F..%2Fetc/"+harness.AppName+"/abort", "",
			"Authorization", admin, "Content-Type", jsonType),
		row("path traversal in a pipeline id", 404, "not found", "GET", "/api/v1/pipelines/..%2F..%2Fsecret", "", "Authorization", admin),
		row("pipelines without a token", 401, "missing token", "GET", "/api/v1/pipelines", ""),
		row("expectation token with the read token", 403, "needs the admin token", "GET", "/api/v1/expectations/"+x.canary.ID+"-production/token", "",
			"Authorization", read),
	}
}

func portOf(u string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
	return port
}

func (x *rig) gatewayRows() []hostileRow {
	route := "/routes/production/" + harness.AppName
	body := func(addr string) string {
		return fmt.Sprintf(`{"StableVersion":%q,"Stable":[{"Addr":%q}]}`, x.first.Version, addr)
	}
	row := func(name string, status int, want, method, path, body string) hostileRow {
		return hostileRow{name: name, status: status, want: []string{want},
			send: func(t *testing.T) hostileAnswer { return x.admin(t, method, path, body) }}
	}
	// Its answer is the socket's mode and its directory's.
	mode := hostileRow{name: "admin socket is 0600 in a 0700 directory", status: 0o600, want: []string{"socket in a directory of mode 700"},
		send: func(t *testing.T) hostileAnswer {
			fi, err := os.Lstat(x.sock)
			if err != nil {
				t.Fatal(err)
			}
			dir, err := os.Stat(filepath.Dir(x.sock))
			if err != nil {
				t.Fatal(err)
			}
			kind := "not a socket"
			if fi.Mode().Type() == os.ModeSocket {
				kind = "socket"
			}
			return hostileAnswer{status: int(fi.Mode().Perm()), body: fmt.Sprintf("%s in a directory of mode %o", kind, dir.Mode().Perm())}
		}}
	return []hostileRow{
		mode,
		row("backend off loopback, 10.0.0.1:80", 400, "neither on loopback nor in an allowed CIDR", "PUT", route, body("10.0.0.1:80")),
		row("backend a host name", 400, "host names are not accepted", "PUT", route, body("localhost:80")),
		row("backend the API's address", 400, "the route would loop", "PUT", route, body(strings.TrimPrefix(x.h.APIURL(), "http://"))),
		row("backend the gateway's own address", 400, "the route would loop", "PUT", route, body(x.h.GatewayAddr())),
		row("backend the unspecified address", 400, "unspecified address", "PUT", route, body("0.0.0.0:80")),
		row("malformed JSON", 400, "decoding body", "PUT", route, `{"Stable":[{"Addr":`),
		row("oversized body", 413, "body over 65536 bytes", "PUT", route, body(strings.Repeat("1", 70<<10))),
		row("canary weight 101", 400, "not in 0..100", "POST", route+"/weight", `{"weight":101}`),
	}
}

func (x *rig) reporterRows() []hostileRow {
	const jsonType = "application/json"
	wf := x.canary.ID + "-production"
	update := func(workflow, app string) string {
		return fmt.Sprintf(`{"WorkflowName":%q,"App":%q,"Success":true,"Message":"forged: all good"}`, workflow, app)
	}
	forged := update(wf, harness.AppName)
	own := "Bearer " + x.canaryToken
	row := func(name string, status int, want, path, body string, hdr ...string) hostileRow {
		return hostileRow{name: name, status: status, want: []string{want},
			send: func(t *testing.T) hostileAnswer { return x.call(t, "POST", path, body, hdr...) }}
	}
	return []hostileRow{
		row("update without a token", 401, "missing reporter token", "/workflow/update", forged, "Content-Type", jsonType),
		row("update with another expectation's token", 403, "wrong reporter token", "/workflow/update", forged,
			"Authorization", "Bearer "+x.otherToken, "Content-Type", jsonType),
		row("update with the API admin token", 403, "wrong reporter token", "/workflow/update", forged,
			"Authorization", "Bearer "+x.h.Token(), "Content-Type", jsonType),
		row("update with a malformed Authorization", 401, "missing reporter token", "/workflow/update", forged,
			"Authorization", x.canaryToken, "Content-Type", jsonType),
		row("update for an unknown workflow", 404, "expectation not found", "/workflow/update", update("no-such-workflow", harness.AppName),
			"Authorization", own, "Content-Type", jsonType),
		row("update for an app not in the expectation", 409, "not in the workflow's expectation", "/workflow/update", update(wf, "otherapp"),
			"Authorization", own, "Content-Type", jsonType),
		row("update with malformed JSON", 400, "decoding body", "/workflow/update", `{"WorkflowName":`, "Authorization", own, "Content-Type", jsonType),
		row("update with unknown fields", 400, "unknown field", "/workflow/update",
			fmt.Sprintf(`{"WorkflowName":%q,"App":%q,"Success":true,"Phase":"Succeeded"}`, wf, harness.AppName), "Authorization", own, "Content-Type", jsonType),
		row("update without Success", 400, "Success is required", "/workflow/update",
			fmt.Sprintf(`{"WorkflowName":%q,"App":%q}`, wf, harness.AppName), "Authorization", own, "Content-Type", jsonType),
		row("update for workflow ../../etc", 400, "only letters, digits", "/workflow/update", update("../../etc", harness.AppName),
			"Authorization", own, "Content-Type", jsonType),
		row("oversized update", 413, "body larger than 65536 bytes", "/workflow/update",
			fmt.Sprintf(`{"WorkflowName":%q,"App":%q,"Success":true,"Message":%q}`, wf, harness.AppName, strings.Repeat("m", 70<<10)),
			"Authorization", own, "Content-Type", jsonType),
		row("submit without the admin token", 401, "missing token", "/workflow/submit",
			fmt.Sprintf(`{"WorkflowName":%q,"Apps":["otherapp"]}`, wf), "Content-Type", jsonType),
		row("submit with the read token", 403, "needs the admin token", "/workflow/submit",
			fmt.Sprintf(`{"WorkflowName":%q,"Apps":["otherapp"]}`, wf), "Authorization", "Bearer "+x.readToken, "Content-Type", jsonType),
		row("submit with the expectation's own token", 401, "invalid token", "/workflow/submit",
			fmt.Sprintf(`{"WorkflowName":%q,"Apps":["otherapp"]}`, wf), "Authorization", own, "Content-Type", jsonType),
	}
}

// abortRow aborts the paused canary with a reason that tries to forge
// commit trailers. The abort is legitimate (the admin token, JSON): the
// rollout is aborted and reverted, and afterwards the processes, routes
// and environments are production's as they were before the canary
// (baseline), while no commit Runway made carries a trailer or a second
// line.
func (x *rig) abortRow(baseline snapshot) hostileRow {
	reason := "operator stop\n\nSigned-off-by: Mallory <mallory@evil.example>\nCo-authored-by: Mallory <mallory@evil.example>\n" +
		strings.Repeat("y", 8<<10)
	body, _ := json.Marshal(map[string]string{"reason": reason})
	return hostileRow{
		name: "abort reason with newlines and a forged Signed-off-by trailer", status: 202, want: []string{"aborting"},
		may: mayChange{custom: true},
		send: func(t *testing.T) hostileAnswer {
			return x.call(t, "POST", "/api/v1/rollouts/production/"+harness.AppName+"/abort", string(body),
				"Authorization", "Bearer "+x.h.Token(), "Content-Type", "application/json")
		},
		check: func(t *testing.T, _ hostileAnswer, before snapshot) {
			ctx, cancel := context.WithTimeout(x.ctx, 5*time.Minute)
			defer cancel()
			p, err := x.h.WaitPipeline(ctx, x.canary.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitRollout || !strings.Contains(p.Reason, "operator stop Signed-off-by") {
				t.Errorf("pipeline %s ended %s at %q: %q, want Failed at %s with the reason on one line", p.ID, p.Phase, p.FailedStep, p.Reason, pipeline.StepAwaitRollout)
			}
			if strings.ContainsAny(p.Reason, "\r\n") || len(p.Reason) > 2<<10 {
				t.Errorf("pipeline reason is not one short line (%d bytes): %q", len(p.Reason), p.Reason)
			}
			after := x.settled(t, baseline)
			reverted := false
			for _, c := range x.commits(t, before.stateHead, after.stateHead) {
				if c.author != "Runway" {
					t.Errorf("state repo commit %.12s by %s", c.sha, c.author)
				}
				if c.trailers != "" || strings.Contains(c.message, "\n") {
					t.Errorf("state repo commit %.12s has trailers %q or more than one line: %q", c.sha, c.trailers, c.message)
				}
				if strings.HasPrefix(c.message, "rollback "+harness.AppName+" to "+x.first.Version) {
					reverted = true
					t.Logf("rollback commit %.12s (%d bytes, no trailers): %.160s...", c.sha, len(c.message), c.message)
				}
			}
			if !reverted {
				t.Errorf("no rollback commit to %s after the abort", x.first.Version)
			}
			for _, d := range diffProcs(baseline.procs, after.procs) {
				t.Errorf("since before the canary: %s", d)
			}
			if b, a := envsString(baseline.envs, true), envsString(after.envs, true); b != a {
				t.Errorf("environments are %s, before the canary %s", a, b)
			}
			if baseline.routes != after.routes {
				t.Errorf("gateway routes are %s, before the canary %s", after.routes, baseline.routes)
			}
			for _, r := range after.rollouts {
				if !strings.Contains(r, "finished true") {
					t.Errorf("rollout still active: %s", r)
				}
			}
			// The abort adds reports and updates the rollout and the
			// pipeline; it starts nothing.
			for _, n := range []string{"pipelines", "webhook_deliveries", "reporter_expectations"} {
				if b, a := before.tables[n].rows, after.tables[n].rows; a != b {
					t.Errorf("store table %s went from %d to %d rows", n, b, a)
				}
			}
			if len(after.pipelines) != len(before.pipelines) {
				t.Errorf("%d pipelines after the abort, %d before", len(after.pipelines), len(before.pipelines))
			}
		},
	}
}

// settled waits, a bounded time, until the processes are those of
// baseline again (the canary's replicas and the staging environment stop
// as the abort and the teardown finish), and returns a snapshot.
func (x *rig) settled(t *testing.T, baseline snapshot) snapshot {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := x.snapshot(t)
		if len(diffProcs(baseline.procs, s.procs)) == 0 || time.Now().After(deadline) {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
}
