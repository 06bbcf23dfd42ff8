package postgres

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/runway-cd/runway/internal/procfs"
)

// startInstance starts a real server in dir and removes it when the test ends.
func startInstance(t *testing.T, dir string) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inst, err := Start(ctx, testConfig(t, dir), dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := inst.Remove(context.Background()); err != nil {
			t.Errorf("cleanup Remove: %v", err)
		}
	})
	return inst
}

// testConfig discovers PostgreSQL, keeps the passwords of the instance in
// dir in secretsFor(dir) and logs into the test's output.
func testConfig(t *testing.T, dir string) Config {
	return Config{SecretsDir: secretsFor(dir), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
}

// secretsFor is the secrets dir tests give the instance in dir: beside it,
// never inside.
func secretsFor(dir string) string { return dir + "-secrets" }

func TestInstanceLifecycle(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "env")
	inst := startInstance(t, dir)

	if inst.Host() != "127.0.0.1" || inst.Port() == 0 || inst.PID() == 0 || inst.Dir() != dir {
		t.Fatalf("instance = host %q port %d pid %d dir %q", inst.Host(), inst.Port(), inst.PID(), inst.Dir())
	}
	rec, err := readRecord(dir)
	if err != nil {
		t.Fatalf("reading instance.json: %v", err)
	}
	if rec.PID != inst.PID() || rec.Port != inst.Port() || rec.SocketDir != filepath.Join(dir, "sock") || rec.StartTime == 0 {
		t.Fatalf("instance.json = %+v", rec)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Fatalf("data dir owned by root, want the unprivileged run-as user")
		}
	}

	// Idempotent: the second call returns the same password.
	first, err := inst.EnsureDatabase(ctx, "app_db", "app")
	if err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	conn, err := inst.EnsureDatabase(ctx, "app_db", "app")
	if err != nil {
		t.Fatalf("EnsureDatabase again: %v", err)
	}
	want := Conn{Host: "127.0.0.1", Port: inst.Port(), User: "app", Password: first.Password, Database: "app_db"}
	if conn != want {
		t.Fatalf("Conn = %+v, want %+v", conn, want)
	}
	if got := queryAsApp(t, conn); got != "pong" {
		t.Fatalf("query as app = %q, want pong", got)
	}
	stale := conn
	stale.Password = "not-" + conn.Password
	if db, err := pgx.Connect(ctx, stale.URL()); err == nil {
		db.Close(ctx)
		t.Fatalf("a wrong password accepted")
	}
	if log, err := os.ReadFile(filepath.Join(dir, "postgres.log")); err != nil || strings.Contains(string(log), conn.Password) || strings.Contains(string(log), inst.password) {
		t.Fatalf("server log holds a password (read err %v)", err)
	}

	pid, port := inst.PID(), inst.Port()
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("postmaster %d after Stop: kill(0) = %v, want ESRCH", pid, err)
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		c.Close()
		t.Fatalf("port %d still listens after Stop", port)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("Stop removed the dir: %v", err)
	}

	// A port taken between choosing and binding it is reported as such, so
	// Start retries on another one.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg, err := testConfig(t, dir).withDefaults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own, err := resolveOwner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.launch(ctx, cfg, own, busy.Addr().(*net.TCPAddr).Port); !errors.Is(err, errPortTaken) {
		t.Fatalf("launch on a taken port: err = %v, want errPortTaken", err)
	}

	// A restart reuses the cluster: the app's role, password and rows survive.
	inst = startInstance(t, dir)
	conn.Port = inst.Port()
	if got := queryAsApp(t, conn); got != "pong" {
		t.Fatalf("query after restart = %q, want pong", got)
	}
	again, err := inst.EnsureDatabase(ctx, "app_db", "app")
	if err != nil || again != conn {
		t.Fatalf("EnsureDatabase after restart = %+v, %v; want %+v", again, err, conn)
	}

	if err := inst.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, p := range []string{dir, secretsFor(dir)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after Remove: stat err = %v, want not exist", p, err)
		}
	}
}

// queryAsApp connects over TCP with the app's password, writes a row and
// reads it back.
func queryAsApp(t *testing.T, c Conn) string {
	t.Helper()
	ctx := t.Context()
	db, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatalf("connecting as %s over TCP: %v", c.User, err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, "CREATE TABLE IF NOT EXISTS ping (value text)"); err != nil {
		t.Fatalf("creating table: %v", err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO ping VALUES ($1)", "pong"); err != nil {
		t.Fatalf("inserting: %v", err)
	}
	var v string
	if err := db.QueryRow(ctx, "SELECT value FROM ping LIMIT 1").Scan(&v); err != nil {
		t.Fatalf("selecting: %v", err)
	}
	return v
}

func TestTwoInstancesSideBySide(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	// The second dir is too long for a unix socket path, so its socket
	// lives in a short dir under os.TempDir() that Remove must delete.
	long := filepath.Join(base, strings.Repeat("x", 60), strings.Repeat("y", 60))
	a := startInstance(t, filepath.Join(base, "a"))
	b := startInstance(t, long)

	if a.Port() == b.Port() || a.PID() == b.PID() {
		t.Fatalf("instances share port %d / pid %d", a.Port(), a.PID())
	}
	if b.sockDir == filepath.Join(long, "sock") || !b.ownsSock {
		t.Fatalf("long dir got socket dir %s", b.sockDir)
	}
	var conns []Conn
	for n, inst := range []*Instance{a, b} {
		conn, err := inst.EnsureDatabase(ctx, "shop", "shop")
		if err != nil {
			t.Fatalf("EnsureDatabase on instance %d: %v", n, err)
		}
		if got := queryAsApp(t, conn); got != "pong" {
			t.Fatalf("instance %d query = %q", n, got)
		}
		conns = append(conns, conn)
	}
	if conns[0].Password == conns[1].Password {
		t.Fatalf("the same role on two instances got the same password")
	}
	// Each instance has only its own row: they are separate servers.
	for n, conn := range conns {
		db, err := pgx.Connect(ctx, conn.URL())
		if err != nil {
			t.Fatalf("connecting to instance %d: %v", n, err)
		}
		var rows int
		err = db.QueryRow(ctx, "SELECT count(*) FROM ping").Scan(&rows)
		db.Close(ctx)
		if err != nil || rows != 1 {
			t.Fatalf("instance %d has %d rows (err %v), want 1", n, rows, err)
		}
	}

	sock := b.sockDir
	if err := b.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, p := range []string{long, sock} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after Remove: stat err = %v, want not exist", p, err)
		}
	}
	if err := a.ping(ctx); err != nil {
		t.Fatalf("instance a after removing b: %v", err)
	}

	// A Stop whose ctx is already over kills at once, backends included.
	db, err := pgx.Connect(ctx, conns[0].URL())
	if err != nil {
		t.Fatalf("connecting to instance a: %v", err)
	}
	defer db.Close(context.Background())
	procs := procfs.Children(a.PID())
	if len(procs) == 0 {
		t.Fatalf("instance a has no server processes besides the postmaster")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Stop(cancelled); err != nil {
		t.Fatalf("Stop with a cancelled ctx: %v", err)
	}
	for _, p := range procs {
		if running(p) {
			t.Errorf("server process %d still runs after a forced Stop", p.PID)
		}
	}
}

// An initdb interrupted by a kill leaves its unfinished data dir; the next
// start removes it (and any other) and initialises afresh in a directory
// of its own.
func TestStartAfterInterruptedInitdb(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	for _, d := range []string{"data.init", "data.init.42"} {
		if err := os.MkdirAll(filepath.Join(dir, d, "base"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "PG_VERSION"), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inst := startInstance(t, dir)
	left, err := filepath.Glob(filepath.Join(dir, "data.init*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("unfinished data dirs left: %v", left)
	}
	c, err := inst.EnsureDatabase(t.Context(), "shop", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got := queryAsApp(t, c); got != "pong" {
		t.Fatalf("query answered %q", got)
	}
}
