package postgres

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// superuserPassword checks cfg.SecretsDir and returns the superuser's
// password for the instance in dir, generated on first use.
func superuserPassword(cfg Config, dir string) (string, error) {
	if err := checkSecretsDir(cfg.SecretsDir, dir); err != nil {
		return "", err
	}
	password, created, err := loadOrCreatePassword(cfg.SecretsDir, superuser)
	if err != nil {
		return "", fmt.Errorf("preparing the superuser password of %s: %w", dir, err)
	}
	if created {
		cfg.Logger.Info("postgres: generated the superuser password", "dir", dir, "file", passwordPath(cfg.SecretsDir, superuser))
	}
	return password, nil
}

// checkSecretsDir refuses a missing secrets dir and one inside the
// instance dir, which the server's OS user owns.
func checkSecretsDir(secretsDir, dir string) error {
	if secretsDir == "" {
		return errors.New("postgres: Config.SecretsDir is required: where the instance's passwords are kept")
	}
	abs, err := filepath.Abs(secretsDir)
	if err != nil {
		return fmt.Errorf("resolving secrets dir: %w", err)
	}
	if rel, err := filepath.Rel(dir, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("postgres: secrets dir %s is inside instance dir %s, which the server's OS user owns", abs, dir)
	}
	return ensureSecretsDir(abs)
}

// adminSession connects as the superuser and takes the lock under which
// roles, databases and pg_hba.conf change. Concurrent updates of one
// catalog row fail ("tuple concurrently updated", duplicate keys) rather
// than wait, so callers take turns: a session lock, released when the
// session closes. A killed control plane's session keeps it only until its
// running statement ends and the server finds the client gone. The wait is
// bounded: a session holding the lock for long (an operator's, say) makes
// this call fail and a later one try again. Passwords travel inside the
// session's statements, so they are kept out of the server log even when a
// statement fails.
func (i *Instance) adminSession(ctx context.Context) (*pgx.Conn, error) {
	conn, err := i.connectRetry(ctx, "postgres") // a launcher may be restarting it
	if err != nil {
		return nil, err
	}
	steps := []struct{ what, sql string }{
		{"configuring session", "SET log_statement = 'none'; SET log_min_error_statement = 'panic'; SET standard_conforming_strings = on; SET password_encryption = 'scram-sha-256'"},
		{"configuring session", "SET lock_timeout = '30s'"},
		{"waiting for other sessions", fmt.Sprintf("SELECT pg_advisory_lock(%d)", ensureLockKey)},
		{"configuring session", "SET lock_timeout = 0"},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql); err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return conn, nil
}

// secure gives the superuser its password and the server Runway's
// pg_hba.conf. For a cluster Runway initialised, both are already so; one
// copied from a template has the template's password, which this first
// connection uses and which is replaced here, so no two instances share a
// superuser password past their first start; one initialised before
// passwords existed trusted socket connections, which let this first
// connection in without the password, and is upgraded.
func (i *Instance) secure(ctx context.Context) error {
	conn, err := i.adminSession(ctx)
	if err != nil {
		return fmt.Errorf("securing postgres in %s: %w", i.dir, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	role := pgx.Identifier{superuser}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" WITH PASSWORD "+QuoteLiteral(i.password)); err != nil {
		return fmt.Errorf("securing postgres in %s: setting the superuser password: %w", i.dir, err)
	}
	if i.initialPassword != "" {
		i.initialPassword = ""
		if err := dropInitialPassword(i.secretsDir); err != nil {
			i.log.Warn("postgres: forgetting the template's superuser password", "dir", i.dir, "err", err)
		}
	}
	if err := i.syncHBA(ctx, conn); err != nil {
		return fmt.Errorf("securing postgres in %s: %w", i.dir, err)
	}
	return nil
}

// refusedPassword reports whether err is the server refusing the
// credentials (SQLSTATE class 28), as opposed to not answering yet.
func refusedPassword(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28")
}

// refusedError explains a server that refuses the superuser's password.
func (i *Instance) refusedError(err error) error {
	return fmt.Errorf("postgres in %s refuses the superuser password in %s (a lost or replaced secrets dir leaves the cluster unreachable; it has to be initialised again): %w",
		i.dir, passwordPath(i.secretsDir, superuser), err)
}
