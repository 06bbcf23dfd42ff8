package runtimetest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/internal/runtime"
)

// testDatabases: one real PostgreSQL server for all database promises
// (starting one is the slow part): EnsurePostgres is idempotent, Database
// hands out settings that reach a database of the app's own, the same on
// every call, and what cannot be met is ErrUnsatisfiable; Destroy takes
// the server with it.
func (s *suite) testDatabases(t *testing.T) {
	if s.h.SkipPostgres != "" {
		t.Skip(s.h.SkipPostgres)
	}
	ctx := testContext(t)
	rt := s.newRuntime(t)
	const env = "env-db"
	if err := rt.EnsurePostgres(ctx, env); err != nil {
		t.Fatalf("EnsurePostgres: %v", err)
	}
	web := database(t, ctx, rt, env, "web")

	t.Run("EnsurePostgres again keeps the server", func(t *testing.T) {
		before := postmasterStart(t, ctx, web)
		if err := rt.EnsurePostgres(ctx, env); err != nil {
			t.Fatalf("second EnsurePostgres: %v", err)
		}
		if after := postmasterStart(t, ctx, web); !after.Equal(before) {
			t.Errorf("second EnsurePostgres restarted the server: started %v, then %v", before, after)
		}
	})
	t.Run("Database gives the same settings on every call", func(t *testing.T) {
		if again := database(t, ctx, rt, env, "web"); !slices.Equal(again, web) {
			t.Errorf("Database again = %q, want %q", again, web)
		}
	})
	t.Run("the settings reach a real database the app can write", func(t *testing.T) {
		for _, key := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "DATABASE_URL"} {
			if value(web, key) == "" {
				t.Errorf("Database settings lack %s: %q", key, web)
			}
		}
		for name, dsn := range map[string]string{"DATABASE_URL": value(web, "DATABASE_URL"), "PG* variables": pgDSN(web)} {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatalf("connecting with %s: %v", name, err)
			}
			var got string
			_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS conformance (v text); INSERT INTO conformance VALUES ('written')`)
			if err == nil {
				err = conn.QueryRow(ctx, `SELECT v FROM conformance LIMIT 1`).Scan(&got)
			}
			conn.Close(ctx)
			if err != nil || got != "written" {
				t.Errorf("writing and reading through %s: %q, %v", name, got, err)
			}
		}
	})
	t.Run("each app gets a database of its own", func(t *testing.T) {
		api := database(t, ctx, rt, env, "api")
		if value(api, "PGDATABASE") == value(web, "PGDATABASE") || value(api, "PGUSER") == value(web, "PGUSER") {
			t.Fatalf("api's settings %q share web's database or user %q", api, web)
		}
		cfg, err := pgx.ParseConfig(value(api, "DATABASE_URL"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Database = value(web, "PGDATABASE")
		if conn, err := pgx.ConnectConfig(ctx, cfg); err == nil {
			conn.Close(ctx)
			t.Error("api's user opened web's database")
		}
	})
	t.Run("a name PostgreSQL cannot take as a role is unsatisfiable", func(t *testing.T) {
		// pg_ roles are PostgreSQL's own.
		if _, err := rt.Database(ctx, env, "pg-monitor"); !errors.Is(err, runtime.ErrUnsatisfiable) {
			t.Errorf("Database(pg-monitor) = %v, want ErrUnsatisfiable", err)
		}
	})
	t.Run("a database in an environment without a server is unsatisfiable", func(t *testing.T) {
		if _, err := rt.Database(ctx, "env-nodb", "web"); !errors.Is(err, runtime.ErrUnsatisfiable) {
			t.Errorf("Database in an environment without postgres = %v, want ErrUnsatisfiable", err)
		}
		if slices.Contains(rt.Envs(), "env-nodb") {
			t.Errorf("Envs = %v: asking for a database created env-nodb", rt.Envs())
		}
	})
	t.Run("Destroy removes the server or the environment's databases", func(t *testing.T) {
		if got := rt.Envs(); !slices.Contains(got, env) {
			t.Errorf("Envs = %v, want %s listed while its server runs", got, env)
		}
		if err := rt.Destroy(ctx, env); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		if s.h.SharedPostgres {
			// The server serves other environments too: what went is
			// this environment's role and database.
			if conn, err := pgx.Connect(ctx, value(web, "DATABASE_URL")); err == nil {
				conn.Close(ctx)
				t.Error("the app's database settings still connect after Destroy")
			}
		} else if answers(net.JoinHostPort(value(web, "PGHOST"), value(web, "PGPORT"))) {
			t.Error("the server still accepts connections after Destroy")
		}
		if got := rt.Envs(); slices.Contains(got, env) {
			t.Errorf("Envs after Destroy = %v", got)
		}
		if _, err := rt.Database(ctx, env, "web"); !errors.Is(err, runtime.ErrUnsatisfiable) {
			t.Errorf("Database after Destroy = %v, want ErrUnsatisfiable (no server)", err)
		}
	})
}

// database is rt.Database's settings, failing the test on error.
func database(t *testing.T, ctx context.Context, rt runtime.Runtime, env, app string) []string {
	t.Helper()
	db, err := rt.Database(ctx, env, app)
	if err != nil {
		t.Fatalf("Database(%s, %s): %v", env, app, err)
	}
	return db.Env()
}

// postmasterStart is when the server the settings reach started.
func postmasterStart(t *testing.T, ctx context.Context, vars []string) time.Time {
	t.Helper()
	conn, err := pgx.Connect(ctx, value(vars, "DATABASE_URL"))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(ctx)
	var at time.Time
	if err := conn.QueryRow(ctx, `SELECT pg_postmaster_start_time()`).Scan(&at); err != nil {
		t.Fatalf("asking when the server started: %v", err)
	}
	return at
}

// value is key's value in a KEY=value list.
func value(vars []string, key string) string {
	for _, kv := range vars {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// pgDSN is a connection URL made of the PG* variables alone.
func pgDSN(vars []string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(value(vars, "PGUSER"), value(vars, "PGPASSWORD")),
		Host:   net.JoinHostPort(value(vars, "PGHOST"), value(vars, "PGPORT")),
		Path:   "/" + value(vars, "PGDATABASE"),
	}
	q := url.Values{}
	if mode := value(vars, "PGSSLMODE"); mode != "" {
		q.Set("sslmode", mode)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
