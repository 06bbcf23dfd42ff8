package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// attempt is one connection a client may try.
type attempt struct {
	host     string // a socket dir or 127.0.0.1
	port     int
	user     string
	password string
	database string
}

// connectAs tries a; no password file or environment variable fills in a
// password left empty.
func connectAs(ctx context.Context, a attempt) error {
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return err
	}
	cfg.Host, cfg.Port = a.host, uint16(a.port)
	cfg.User, cfg.Password, cfg.Database = a.user, a.password, a.database
	cfg.ConnectTimeout = 5 * time.Second
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// sqlState is the SQLSTATE a server answered with, "" for none.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestOnlyOwnRolesAdmitted tries every kind of connection on a server with
// two apps: each app role reaches its own database over TCP, the superuser
// reaches any over the socket with its password, and pg_hba.conf refuses
// everything else, right passwords included.
func TestOnlyOwnRolesAdmitted(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "env")
	inst := startInstance(t, dir)
	shop, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatal(err)
	}
	other, err := inst.EnsureDatabase(ctx, "other", "other")
	if err != nil {
		t.Fatal(err)
	}
	// A role an operator made and let connect to shop: the grant does not
	// open pg_hba.conf, which names only a database's owner.
	admin, err := inst.adminSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE ROLE reader LOGIN PASSWORD 'reader-password'",
		"GRANT CONNECT ON DATABASE shop TO reader",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	admin.Close(ctx)

	tcp := func(user, password, database string) attempt {
		return attempt{host: loopback, port: inst.Port(), user: user, password: password, database: database}
	}
	sock := func(user, password, database string) attempt {
		return attempt{host: inst.sockDir, port: inst.Port(), user: user, password: password, database: database}
	}
	const (
		ok         = ""
		noHBAEntry = "28000" // invalid_authorization_specification: no pg_hba.conf line
		badPass    = "28P01" // invalid_password
	)
	tests := []struct {
		name  string
		try   attempt
		state string // SQLSTATE wanted; ok: the connection works
	}{
		{"app to its database over TCP", tcp(shop.User, shop.Password, shop.Database), ok},
		{"other app to its database over TCP", tcp(other.User, other.Password, other.Database), ok},
		{"app with a wrong password", tcp(shop.User, other.Password, shop.Database), badPass},
		{"app to another app's database", tcp(shop.User, shop.Password, other.Database), noHBAEntry},
		{"app to postgres", tcp(shop.User, shop.Password, "postgres"), noHBAEntry},
		{"app to template1", tcp(shop.User, shop.Password, "template1"), noHBAEntry},
		{"app over the socket", sock(shop.User, shop.Password, shop.Database), noHBAEntry},
		{"granted role over TCP", tcp("reader", "reader-password", shop.Database), noHBAEntry},
		{"superuser over TCP with its password", tcp(superuser, inst.password, "postgres"), noHBAEntry},
		{"superuser over TCP to an app database", tcp(superuser, inst.password, shop.Database), noHBAEntry},
		{"superuser over the socket with its password", sock(superuser, inst.password, "postgres"), ok},
		{"superuser over the socket without a password", sock(superuser, "", "postgres"), badPass},
		{"superuser over the socket with an app's password", sock(superuser, shop.Password, "postgres"), badPass},
		{"superuser with a guessed password", sock(superuser, superuser, shop.Database), badPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connectAs(ctx, tt.try)
			if tt.state == ok {
				if err != nil {
					t.Fatalf("connection refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("connection admitted")
			}
			// Without a password pgx may give up before the server answers.
			if got := sqlState(err); got != tt.state && !(tt.try.password == "" && got == "") {
				t.Fatalf("refused with SQLSTATE %q (%v), want %s", got, err, tt.state)
			}
		})
	}

	b, err := os.ReadFile(filepath.Join(inst.dataDir, hbaFile))
	if err != nil {
		t.Fatal(err)
	}
	want := hbaContent([]hbaEntry{{"other", "other"}, {"shop", "shop"}})
	if string(b) != want {
		t.Errorf("pg_hba.conf =\n%s\nwant\n%s", b, want)
	}
	if strings.Contains(string(b), "trust") {
		t.Errorf("pg_hba.conf trusts some connection:\n%s", b)
	}
	checkSecrets(t, inst, map[string]string{superuser: inst.password, "shop": shop.Password, "other": other.Password})
	if left, _ := filepath.Glob(filepath.Join(dir, ".pwfile.*")); len(left) > 0 {
		t.Errorf("initdb's password file left behind: %v", left)
	}
}

// checkSecrets checks the instance's secrets dir holds exactly the
// passwords want (role → password), random hex, 0600 in a 0700 dir owned
// by this process' user.
func checkSecrets(t *testing.T, inst *Instance, want map[string]string) {
	t.Helper()
	checkMode := func(path string, mode os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), mode)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
			t.Errorf("%s is owned by uid %d, want %d (Runway's)", path, uid, os.Geteuid())
		}
	}
	checkMode(inst.secretsDir, os.ModeDir|0o700)
	entries, err := os.ReadDir(inst.secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("secrets dir holds %d files, want %d", len(entries), len(want))
	}
	for role, password := range want {
		path := passwordPath(inst.secretsDir, role)
		checkMode(path, 0o600)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != password {
			t.Errorf("%s holds another password than the one in use", path)
		}
		if raw, err := hex.DecodeString(password); err != nil || len(raw) != passwordBytes {
			t.Errorf("password of %s is not %d random bytes in hex", role, passwordBytes)
		}
	}
}

func TestStartRefusesSecretsDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	tests := []struct {
		name       string
		secretsDir string
	}{
		{"none", ""},
		{"the instance dir", dir},
		{"inside the instance dir", filepath.Join(dir, "secrets")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, dir)
			cfg.SecretsDir = tt.secretsDir
			inst, err := Start(t.Context(), cfg, dir)
			if err == nil {
				_ = inst.Remove(context.Background())
				t.Fatal("Start succeeded")
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a cluster was initialised anyway: %v", err)
			}
		})
	}
}

// oldHBA is the pg_hba.conf initdb --auth-local=trust --auth-host=scram-sha-256
// wrote for clusters of Runway versions before passwords.
const oldHBA = `local   all             all                                     trust
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
`

// makeOld turns a running instance into one the earlier Runway made and
// still runs: the superuser has no password, socket connections are
// trusted and no password is stored (the app's was derived from a secret).
func makeOld(t *testing.T, inst *Instance) {
	t.Helper()
	ctx := t.Context()
	conn, err := inst.adminSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := os.WriteFile(filepath.Join(inst.dataDir, hbaFile), []byte(oldHBA), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := inst.reload(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE runway PASSWORD NULL; ALTER ROLE shop PASSWORD 'derived-from-the-secret'"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(inst.secretsDir); err != nil {
		t.Fatal(err)
	}
	if err := connectAs(ctx, attempt{host: inst.sockDir, port: inst.Port(), user: superuser, database: "postgres"}); err != nil {
		t.Fatalf("the old instance does not trust the socket: %v", err)
	}
}

// TestUpgradeTrustingInstance starts (after a restart) or adopts (while it
// runs) a cluster of an earlier Runway and expects it locked down: the
// superuser has a password, pg_hba.conf is Runway's, the app's data is
// kept and its password replaced by a random stored one.
func TestUpgradeTrustingInstance(t *testing.T) {
	tests := []struct {
		name    string
		upgrade func(t *testing.T, old *Instance, cfg Config) *Instance
	}{
		{"restarted", func(t *testing.T, old *Instance, cfg Config) *Instance {
			if err := old.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
			inst, err := Start(t.Context(), cfg, old.Dir())
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			t.Cleanup(func() { _ = inst.Remove(context.Background()) })
			return inst
		}},
		{"adopted", func(t *testing.T, old *Instance, cfg Config) *Instance {
			inst, err := Adopt(t.Context(), cfg, old.Dir())
			if err != nil {
				t.Fatalf("Adopt: %v", err)
			}
			t.Cleanup(func() { _ = inst.Remove(context.Background()) })
			return inst
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "env")
			old := startInstance(t, dir)
			conn, err := old.EnsureDatabase(ctx, "shop", "shop")
			if err != nil {
				t.Fatal(err)
			}
			queryAsApp(t, conn)
			makeOld(t, old)

			inst := tt.upgrade(t, old, testConfig(t, dir))
			b, err := os.ReadFile(filepath.Join(inst.dataDir, hbaFile))
			if err != nil {
				t.Fatal(err)
			}
			if want := hbaContent([]hbaEntry{{"shop", "shop"}}); string(b) != want {
				t.Fatalf("pg_hba.conf after the upgrade =\n%s\nwant\n%s", b, want)
			}
			sock := attempt{host: inst.sockDir, port: inst.Port(), user: superuser, database: "postgres"}
			if err := connectAs(ctx, sock); err == nil {
				t.Fatal("the socket still admits the superuser without a password")
			}
			sock.password = inst.password
			if err := connectAs(ctx, sock); err != nil {
				t.Fatalf("the superuser cannot connect with its password: %v", err)
			}
			stale := attempt{host: loopback, port: inst.Port(), user: "shop", password: "derived-from-the-secret", database: "shop"}
			if err := connectAs(ctx, stale); err != nil {
				t.Fatalf("the app's old password stopped working before the app got a new one: %v", err)
			}

			fresh, err := inst.EnsureDatabase(ctx, "shop", "shop")
			if err != nil {
				t.Fatalf("EnsureDatabase after the upgrade: %v", err)
			}
			if err := connectAs(ctx, stale); err == nil {
				t.Fatal("the derived password is still accepted")
			}
			checkSecrets(t, inst, map[string]string{superuser: inst.password, "shop": fresh.Password})
			db, err := pgx.Connect(ctx, fresh.URL())
			if err != nil {
				t.Fatalf("the app cannot connect with its new password: %v", err)
			}
			defer db.Close(context.Background())
			var rows int
			if err := db.QueryRow(ctx, "SELECT count(*) FROM ping").Scan(&rows); err != nil || rows != 1 {
				t.Fatalf("the app's rows after the upgrade: %d, %v; want 1", rows, err)
			}
		})
	}
}

// A server that refuses the stored superuser password (its secrets dir
// was lost) is reported as such at once, not waited for.
func TestStartRefusedPassword(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	inst := startInstance(t, dir)
	if err := inst.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(secretsFor(dir)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	began := time.Now()
	again, err := Start(ctx, testConfig(t, dir), dir)
	if err == nil {
		_ = again.Remove(context.Background())
		t.Fatal("Start with a lost password succeeded")
	}
	if !strings.Contains(err.Error(), "refuses the superuser password") || ctx.Err() != nil {
		t.Fatalf("Start error = %v after %v, want a refused password at once", err, time.Since(began))
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused server still runs: postmaster.pid stat err = %v", err)
	}
}
