package local

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/sandbox"
	"github.com/runway-cd/runway/internal/supervisor"
)

// Benchmarks of issue 9's "Benchmark (reported, not asserted)": they report
// figures with b.ReportMetric and assert nothing about timing. Both need
// PostgreSQL's binaries (skipped without) and are skipped under -short.
//
//	go test -run '^$' -bench 'ReplicaRestart|StagingReady' -benchtime 1x ./internal/runtime/local/

const (
	// benchPoll is how often the benchmarks look for what they wait for.
	benchPoll = time.Millisecond
	// benchWait bounds every wait, so that a broken runtime fails the
	// benchmark instead of hanging it.
	benchWait = 30 * time.Second
	// restartKills is how many times BenchmarkReplicaRestart kills a replica.
	restartKills = 20
	// stagingRounds is how many environments BenchmarkStagingReady brings
	// up; the first builds the PostgreSQL template and is reported apart.
	stagingRounds = 10
	// benchUIDBase is the sandbox uid range of BenchmarkStagingReady, apart
	// from every test's.
	benchUIDBase = 1790000
)

// pgBinDir is `pg_config --bindir`, or skips b when PostgreSQL is missing.
func pgBinDir(b *testing.B) string {
	b.Helper()
	if testing.Short() {
		b.Skip("benchmark of real processes: skipped under -short")
	}
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		b.Skipf("PostgreSQL binaries missing: pg_config --bindir: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	for _, prog := range []string{"postgres", "initdb"} {
		if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
			b.Skipf("PostgreSQL binaries missing: %v", err)
		}
	}
	return dir
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summary is the minimum, median (nearest rank) and maximum of samples.
func summary(samples []time.Duration) (lo, p50, hi time.Duration) {
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return 0, 0, 0
	}
	return s[0], s[(len(s)-1)/2], s[len(s)-1]
}

// waitFor polls cond every benchPoll until it holds (true) or benchWait
// has passed (false).
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(benchWait); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(benchPoll)
	}
}

// freshClient dials a new connection for every request: a killed
// replica's kept-alive connection says nothing about its successor.
func freshClient() *http.Client {
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// answers reports whether url answers 200.
func answers(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// BenchmarkReplicaRestart: kill -9 of replica 0 of 2 in production, 20
// times; the time until Status shows it ready again with a new pid, and
// until the replica's address answers 200 again to a plain client.
//
// The supervisor is the runtime's, but with a backoff reset of 100ms
// instead of 10m: with the default schedule the second kill within 10
// minutes is restarted after 1s, the third after 2s and so on (the crash
// loop), while this measures the restart of a replica killed by accident,
// which is immediate. Every kill comes after the replica has run
// restartSettle.
func BenchmarkReplicaRestart(b *testing.B) {
	pgBinDir(b)
	const restartSettle = 200 * time.Millisecond
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	base := b.TempDir()
	sup, err := supervisor.New(ctx, supervisor.Options{
		StatePath: filepath.Join(base, "supervisor.json"),
		Logger:    quiet,
		Backoff:   supervisor.Backoff{Reset: 100 * time.Millisecond},
	})
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(base, "envs")
	rt, err := New(Options{Dir: dir, SecretsDir: secretsFor(dir), Logger: quiet, Supervisor: sup})
	if err != nil {
		sup.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, env := range rt.Envs() {
			if err := rt.Destroy(ctx, env); err != nil {
				b.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		if err := rt.Close(ctx); err != nil {
			b.Errorf("cleanup Close: %v", err)
		}
		if err := sup.StopAll(ctx); err != nil {
			b.Errorf("cleanup StopAll: %v", err)
		}
		sup.Close()
	})
	const env = "production"
	if _, err := rt.Start(ctx, testReplicaSet(env, "v1", 2)); err != nil {
		b.Fatalf("Start: %v", err)
	}
	client := freshClient()
	var ready, answer []time.Duration
	for b.Loop() {
		for kill := range restartKills {
			time.Sleep(restartSettle)
			st := rt.Status(env, "web", "v1")
			if len(st) != 2 || !st[0].Ready || st[0].PID == 0 {
				b.Fatalf("before kill %d: Status = %+v, want 2 replicas, replica 0 ready", kill+1, st)
			}
			old, url := st[0].PID, "http://"+st[0].Addr+"/healthz"
			began := time.Now()
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				b.Fatal(err)
			}
			answered := make(chan time.Duration, 1)
			go func() {
				// The old process may still answer for a moment after the
				// signal; a 200 counts once its pid is gone.
				ok := waitFor(func() bool { return gone(old) && answers(client, url) })
				if !ok {
					answered <- -1
					return
				}
				answered <- time.Since(began)
			}()
			var now []runtime.ReplicaStatus
			ok := waitFor(func() bool {
				now = rt.Status(env, "web", "v1")
				return len(now) == 2 && now[0].Ready && now[0].PID != 0 && now[0].PID != old
			})
			took := time.Since(began)
			a := <-answered
			if !ok || a < 0 {
				b.Fatalf("kill %d: replica 0 not back within %v (status ready: %v, answered: %v): %+v", kill+1, benchWait, ok, a >= 0, now)
			}
			ready, answer = append(ready, took), append(answer, a)
		}
	}
	lo, p50, hi := summary(ready)
	_, ap50, ahi := summary(answer)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(len(ready)), "kills")
	b.ReportMetric(ms(lo), "min_ms")
	b.ReportMetric(ms(p50), "p50_ms")
	b.ReportMetric(ms(hi), "max_ms")
	b.ReportMetric(ms(ap50), "answer_p50_ms")
	b.ReportMetric(ms(ahi), "answer_max_ms")
}

// stagingPhases is where the time of one environment's start goes.
type stagingPhases struct {
	postgres, database, replicas, total time.Duration
	// copy is when the runtime logged the cluster copied from the template
	// (part of postgres).
	copy time.Duration
}

// BenchmarkStagingReady: what wait-staging-ready waits for in a new
// environment (its PostgreSQL, the app's database, 2 replicas healthy on
// /healthz), on a runtime configured as `runway serve` configures it
// (sandbox uids, the in-process supervisor, a PostgreSQL template dir),
// against its floor: copying an initialised data dir, starting postgres on
// it until it accepts a TCP connection, and starting the 2 app processes
// until each answers 200, with nothing of Runway in between. The rounds
// and the floor alternate; the first round builds the template and is
// reported apart (first_ms).
func BenchmarkStagingReady(b *testing.B) {
	bin := pgBinDir(b)
	if os.Geteuid() != 0 {
		b.Skip("needs root: environments run as sandbox uids, as under runway serve")
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	trace := &eventTrace{}
	base := b.TempDir()
	sb, err := sandbox.New(sandbox.Options{Base: benchUIDBase, Count: 20, StateFile: filepath.Join(base, "uids.json"), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	// The test server, where the environments' uids can run it.
	app := filepath.Join(base, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		b.Fatal(err)
	}
	prog, err := os.ReadFile(filepath.Join(appDir, "server"))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "server"), prog, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := sb.Traversable(filepath.Join(app, "server")); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(base, "envs")
	templates := filepath.Join(base, "postgres-templates")
	rt, err := New(Options{
		Dir: dir, SecretsDir: secretsFor(dir), Logger: slog.New(trace), Sandbox: sb,
		Postgres: postgres.Config{BinDir: bin, TemplateDir: templates},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, env := range rt.Envs() {
			if err := rt.Destroy(ctx, env); err != nil {
				b.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		if err := rt.Close(ctx); err != nil {
			b.Errorf("cleanup Close: %v", err)
		}
	})

	n := 0
	staging := func() stagingPhases {
		n++
		env := "staging-" + strconv.Itoa(n)
		var ph stagingPhases
		began := time.Now()
		trace.start(began)
		if err := rt.EnsurePostgres(ctx, env); err != nil {
			b.Fatalf("EnsurePostgres %s: %v", env, err)
		}
		ph.postgres = time.Since(began)
		db, err := rt.Database(ctx, env, "web")
		if err != nil {
			b.Fatalf("Database %s: %v", env, err)
		}
		ph.database = time.Since(began) - ph.postgres
		rs := runtime.ReplicaSet{
			Env: env, App: "web", Version: "v1", Dir: app,
			Command: []string{"./server"}, PortEnv: "PORT", HealthPath: "/healthz", Replicas: 2,
			Vars: db.Env(),
		}
		if _, err := rt.Start(ctx, rs); err != nil {
			b.Fatalf("Start %s: %v", env, err)
		}
		ph.total = time.Since(began)
		ph.replicas = ph.total - ph.postgres - ph.database
		events, copied := trace.stop()
		ph.copy = copied
		if testing.Verbose() {
			b.Logf("%s: what the runtime logged, from the start:\n%s", env, events)
		}
		if err := rt.Destroy(ctx, env); err != nil {
			b.Fatalf("Destroy %s: %v", env, err)
		}
		return ph
	}

	var ready, floor []time.Duration
	var phases []stagingPhases
	var floors []floorPhases
	var first stagingPhases
	for b.Loop() {
		first = staging() // builds the template
		b.Logf("round 1 (builds the template): %v (postgres %v, database %v, replicas %v)",
			first.total.Round(time.Millisecond), first.postgres.Round(time.Millisecond),
			first.database.Round(time.Millisecond), first.replicas.Round(time.Millisecond))
		fl := newFloor(b, bin, templates, filepath.Join(app, "server"), filepath.Join(base, "floor"))
		for round := 2; round <= stagingRounds; round++ {
			var ph stagingPhases
			var f floorPhases
			if round%2 == 0 {
				f = fl.run(b)
				ph = staging()
			} else {
				ph = staging()
				f = fl.run(b)
			}
			phases, ready, floor = append(phases, ph), append(ready, ph.total), append(floor, f.total)
			floors = append(floors, f)
			r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
			b.Logf("round %d: ready %v (postgres %v of which copy %v, database %v, replicas %v); floor %v (copy %v, postgres %v, apps %v; bare SQL after it: role+db %v, db file_copy %v, db async %v, rename %v, reload %v)", round,
				r(ph.total), r(ph.postgres), r(ph.copy), r(ph.database), r(ph.replicas),
				r(f.total), r(f.copy), r(f.postgres), r(f.apps), r(f.roleDB), r(f.fileCopy), r(f.async), r(f.rename), r(f.reload))
		}
	}
	_, rp50, rhi := summary(ready)
	_, fp50, fhi := summary(floor)
	part := func(get func(stagingPhases) time.Duration) time.Duration {
		var s []time.Duration
		for _, ph := range phases {
			s = append(s, get(ph))
		}
		_, p50, _ := summary(s)
		return p50
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(first.total), "first_ms")
	b.ReportMetric(ms(rp50), "ready_p50_ms")
	b.ReportMetric(ms(rhi), "ready_max_ms")
	b.ReportMetric(ms(fp50), "floor_p50_ms")
	b.ReportMetric(ms(fhi), "floor_max_ms")
	if fp50 > 0 {
		b.ReportMetric(float64(rp50)/float64(fp50), "ratio")
	}
	floorPart := func(get func(floorPhases) time.Duration) time.Duration {
		var s []time.Duration
		for _, f := range floors {
			s = append(s, get(f))
		}
		_, p50, _ := summary(s)
		return p50
	}
	b.ReportMetric(ms(part(func(p stagingPhases) time.Duration { return p.copy })), "copy_p50_ms")
	b.ReportMetric(ms(part(func(p stagingPhases) time.Duration { return p.total - p.copy })), "ready_nocopy_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.copy })), "floor_copy_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.total - f.copy })), "floor_nocopy_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.roleDB })), "sql_roledb_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.fileCopy })), "sql_filecopy_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.async })), "sql_async_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.rename })), "sql_rename_p50_ms")
	b.ReportMetric(ms(floorPart(func(f floorPhases) time.Duration { return f.reload })), "sql_reload_p50_ms")
	b.ReportMetric(ms(part(func(p stagingPhases) time.Duration { return p.postgres })), "postgres_p50_ms")
	b.ReportMetric(ms(part(func(p stagingPhases) time.Duration { return p.database })), "database_p50_ms")
	b.ReportMetric(ms(part(func(p stagingPhases) time.Duration { return p.replicas })), "replicas_p50_ms")
}

// pgFloor starts PostgreSQL and the app with nothing of Runway in between.
type pgFloor struct {
	bin, template, server, dir string
	password                   string // the template superuser's
	uid, gid                   uint32
	n                          int
}

type floorPhases struct {
	copy, postgres, apps, total time.Duration
	// Not part of the floor, measured after it on the same server, as the
	// superuser over the socket: what the database phase costs in bare
	// SQL. roleDB: CREATE ROLE, CREATE DATABASE (PostgreSQL's default
	// strategy) and REVOKE CONNECT; fileCopy: CREATE DATABASE STRATEGY
	// FILE_COPY; async: CREATE DATABASE with synchronous_commit off;
	// rename: ALTER DATABASE RENAME (a database made ahead, e.g. in the
	// template, handed to the app); reload: pg_reload_conf() until a new
	// connection sees it.
	roleDB, fileCopy, async, rename, reload time.Duration
}

// newFloor prepares floor runs in dir, copying the data dir of the
// template the runtime built in templates, as its owner.
func newFloor(b *testing.B, bin, templates, server, dir string) *pgFloor {
	b.Helper()
	data, _ := filepath.Glob(filepath.Join(templates, "pg*", "data"))
	if len(data) != 1 {
		b.Fatalf("template data dirs in %s: %v, want one", templates, data)
	}
	fi, err := os.Stat(data[0])
	if err != nil {
		b.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid == 0 {
		b.Fatalf("template %s is root's", data[0])
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	pw, err := os.ReadFile(filepath.Join(filepath.Dir(data[0]), "password"))
	if err != nil {
		b.Fatal(err)
	}
	return &pgFloor{bin: bin, template: data[0], server: server, dir: dir, uid: st.Uid, gid: st.Gid, password: strings.TrimSpace(string(pw))}
}

// run is one floor measurement: cp -a of the template's data dir,
// postgres on it until it accepts a TCP connection, then 2 app processes
// until each answers 200 on /healthz; then everything is stopped and
// removed (not timed).
func (f *pgFloor) run(b *testing.B) floorPhases {
	b.Helper()
	f.n++
	d := filepath.Join(f.dir, strconv.Itoa(f.n))
	if err := os.Mkdir(d, 0o700); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(d, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		b.Fatal(err)
	}
	for _, p := range []string{d, sock} {
		if err := os.Chown(p, int(f.uid), int(f.gid)); err != nil {
			b.Fatal(err)
		}
	}
	logFile, err := os.Create(filepath.Join(d, "postgres.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	port, err := freePort()
	if err != nil {
		b.Fatal(err)
	}
	pgAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var procs []*exec.Cmd
	stop := func() {
		for _, c := range procs {
			sig := syscall.SIGKILL
			if c.Path == filepath.Join(f.bin, "postgres") {
				sig = syscall.SIGQUIT // immediate shutdown, children included
			}
			_ = syscall.Kill(-c.Process.Pid, sig)
			_ = c.Wait()
		}
		procs = nil
		_ = os.RemoveAll(d)
	}
	defer stop()
	var ph floorPhases

	began := time.Now()
	data := filepath.Join(d, "data")
	if out, err := exec.Command("cp", "-a", "-T", "--", f.template, data).CombinedOutput(); err != nil {
		b.Fatalf("cp -a %s: %v: %s", f.template, err, out)
	}
	ph.copy = time.Since(began)
	pg := exec.Command(filepath.Join(f.bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", sock, "-c", "listen_addresses=127.0.0.1")
	pg.Dir = d
	pg.Stdout, pg.Stderr = logFile, logFile
	pg.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: f.uid, Gid: f.gid, Groups: []uint32{}}}
	if err := pg.Start(); err != nil {
		b.Fatal(err)
	}
	procs = append(procs, pg)
	if !waitFor(func() bool { return listens(pgAddr) }) {
		log, _ := os.ReadFile(logFile.Name())
		b.Fatalf("floor postgres on %s not accepting within %v; log:\n%s", pgAddr, benchWait, log)
	}
	ph.postgres = time.Since(began) - ph.copy

	var urls []string
	for range 2 {
		p, err := freePort()
		if err != nil {
			b.Fatal(err)
		}
		c := exec.Command(f.server)
		c.Env = []string{"PORT=" + strconv.Itoa(p)}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		procs = append(procs, c)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/healthz", p))
	}
	client := freshClient()
	var wg sync.WaitGroup
	oks := make([]bool, len(urls))
	for i, u := range urls {
		wg.Go(func() { oks[i] = waitFor(func() bool { return answers(client, u) }) })
	}
	wg.Wait()
	if slices.Contains(oks, false) {
		b.Fatalf("floor app processes not answering within %v: %v", benchWait, oks)
	}
	ph.total = time.Since(began)
	ph.apps = ph.total - ph.copy - ph.postgres
	f.profileSQL(b, sock, port, &ph)
	return ph
}

// profileSQL times the database phase's statements on the floor's server.
func (f *pgFloor) profileSQL(b *testing.B, sock string, port int, ph *floorPhases) {
	b.Helper()
	ctx := context.Background()
	connect := func() *pgx.Conn {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=runway dbname=postgres sslmode=disable", sock, port))
		if err != nil {
			b.Fatal(err)
		}
		cfg.Password = f.password
		var c *pgx.Conn
		if !waitFor(func() bool { // the TCP accept came before recovery ended
			c, err = pgx.ConnectConfig(ctx, cfg)
			return err == nil
		}) {
			b.Fatalf("connecting to the floor's server: %v", err)
		}
		return c
	}
	conn := connect()
	defer conn.Close(ctx)
	exec := func(sql string) {
		if _, err := conn.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	began := time.Now()
	exec("CREATE ROLE web LOGIN PASSWORD 'x'")
	exec("CREATE DATABASE web OWNER web")
	exec("REVOKE CONNECT ON DATABASE web FROM PUBLIC")
	ph.roleDB = time.Since(began)
	began = time.Now()
	exec("CREATE DATABASE web2 OWNER web STRATEGY FILE_COPY")
	ph.fileCopy = time.Since(began)
	exec("SET synchronous_commit = off")
	began = time.Now()
	exec("CREATE DATABASE web3 OWNER web")
	ph.async = time.Since(began)
	exec("SET synchronous_commit = on")
	began = time.Now()
	exec("ALTER DATABASE web3 RENAME TO web4")
	ph.rename = time.Since(began)
	var before time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&before); err != nil {
		b.Fatal(err)
	}
	began = time.Now()
	exec("SELECT pg_reload_conf()")
	if !waitFor(func() bool {
		c := connect()
		defer c.Close(ctx)
		var t time.Time
		return c.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&t) == nil && t.After(before)
	}) {
		b.Fatal("the floor's server did not reload")
	}
	ph.reload = time.Since(began)
}

// eventTrace is a slog handler that records when each message was logged
// (since start), to show where a round's time goes (-v only).
type eventTrace struct {
	mu     sync.Mutex
	began  time.Time
	on     bool
	events []string
	copied time.Duration
}

func (t *eventTrace) start(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.began, t.on, t.events, t.copied = at, true, nil, 0
}

// stop ends the trace: the events, and when the cluster copy was done.
func (t *eventTrace) stop() (events string, copied time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = false
	return strings.Join(t.events, "\n"), t.copied
}

func (t *eventTrace) Enabled(context.Context, slog.Level) bool { return true }
func (t *eventTrace) WithAttrs([]slog.Attr) slog.Handler       { return t }
func (t *eventTrace) WithGroup(string) slog.Handler            { return t }
func (t *eventTrace) Handle(_ context.Context, r slog.Record) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.on {
		return nil
	}
	id := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "id" || a.Key == "took" {
			id += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	if r.Message == "postgres: initialised cluster from template" {
		t.copied = r.Time.Sub(t.began)
	}
	t.events = append(t.events, fmt.Sprintf("  +%7.1fms %s%s", ms(r.Time.Sub(t.began)), r.Message, id))
	return nil
}
