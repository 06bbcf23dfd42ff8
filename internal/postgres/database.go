package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInvalidName is returned for a database or role name Runway does not
// accept: it must match [a-z_][a-z0-9_]{0,62} and not be reserved.
var ErrInvalidName = errors.New("invalid name")

var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// reservedDatabases are the databases every cluster has.
var reservedDatabases = map[string]bool{"postgres": true, "template0": true, "template1": true}

// spareDatabase is the database a cluster copied from a template has ready
// for its first app (see createSpare): renaming it and handing it to the
// app's role takes a millisecond, CREATE DATABASE hundreds (it copies
// template1 and flushes megabytes of WAL). It is owned by the superuser,
// so no pg_hba.conf line lets anyone but the superuser reach it, and
// Runway never connects to it.
const spareDatabase = "runway_spare"

// validateName checks a database (kind "database") or role (kind "user")
// name. Roles starting with pg_ are PostgreSQL's, and the superuser must
// never be handed to an app.
func validateName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s name %q: %w: want [a-z_][a-z0-9_]{0,62}", kind, name, ErrInvalidName)
	}
	switch {
	case kind == "database" && reservedDatabases[name]:
		return fmt.Errorf("database name %q: %w: reserved by PostgreSQL", name, ErrInvalidName)
	case kind == "database" && name == spareDatabase:
		return fmt.Errorf("database name %q: %w: reserved by Runway", name, ErrInvalidName)
	case kind == "user" && (name == superuser || strings.HasPrefix(name, "pg_")):
		return fmt.Errorf("user name %q: %w: reserved", name, ErrInvalidName)
	}
	return nil
}

// EnsureDatabase makes sure a LOGIN role user exists, with its password,
// and a database name owned by it, which only its owner may connect to,
// and only over TCP: pg_hba.conf gains the one line that lets user reach
// name. The password is random, generated the first time and kept in the
// secrets dir (<user>.password, 0600), so later calls, after a restart
// too, return the same one; the role is set to it on every call. It is
// idempotent. It returns what an app needs to connect. With a Launcher, a
// connection lost to a restart is made again and the work redone. A
// cluster copied from a template gives its first new database the
// template's spare one, renamed (see spareDatabase).
func (i *Instance) EnsureDatabase(ctx context.Context, name, user string) (Conn, error) {
	if err := validateName("database", name); err != nil {
		return Conn{}, err
	}
	if err := validateName("user", user); err != nil {
		return Conn{}, err
	}
	for attempt := 1; ; attempt++ {
		c, err := i.ensureDatabase(ctx, name, user)
		if err == nil || attempt == lostAttempts || !i.lostConnection(ctx, err) {
			return c, err
		}
		i.log.Info("postgres: lost the connection, trying again", "dir", i.dir, "database", name, "err", err)
	}
}

// ensureDatabase is one attempt of EnsureDatabase.
func (i *Instance) ensureDatabase(ctx context.Context, name, user string) (Conn, error) {
	conn, err := i.adminSession(ctx)
	if err != nil {
		return Conn{}, fmt.Errorf("ensuring database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Under the session's lock: concurrent first calls for one role agree
	// on its password.
	password, created, err := loadOrCreatePassword(i.secretsDir, user)
	if err != nil {
		return Conn{}, fmt.Errorf("ensuring database %s: %w", name, err)
	}
	if created {
		i.log.Info("postgres: generated an app role password", "dir", i.dir, "role", user, "file", passwordPath(i.secretsDir, user))
	}
	for attempt := 1; ; attempt++ {
		err = i.ensureRoleAndDatabase(ctx, conn, name, user, password)
		if err == nil || !retryable(err) || attempt == ensureAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return Conn{}, fmt.Errorf("ensuring database %s: %w", name, errors.Join(err, ctx.Err()))
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
	if err != nil {
		return Conn{}, err
	}
	if err := i.syncHBA(ctx, conn); err != nil {
		return Conn{}, fmt.Errorf("ensuring database %s: %w", name, err)
	}
	return Conn{Host: loopback, Port: i.port, User: user, Password: password, Database: name}, nil
}

// ensureLockKey is the advisory lock EnsureDatabase holds while it changes
// roles and databases ("runway-ensure" in ASCII, cut to 63 bits).
const ensureLockKey int64 = 0x72756e7761792d65

// ensureAttempts bounds retries of a change that raced a session outside
// Runway's lock (an operator's psql, say).
const ensureAttempts = 4

func (i *Instance) ensureRoleAndDatabase(ctx context.Context, conn *pgx.Conn, name, user, password string) error {
	if err := ensureRole(ctx, conn, user, password); err != nil {
		return fmt.Errorf("ensuring role %s: %w", user, err)
	}
	if err := i.ensureOwnedDatabase(ctx, conn, name, user); err != nil {
		return fmt.Errorf("ensuring database %s: %w", name, err)
	}
	return nil
}

// retryable reports whether err is a catalog race that succeeds when tried
// again: a concurrent update of the same row (XX000 "tuple concurrently
// updated"), a duplicate key from a concurrent create, a serialization
// failure or a deadlock.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01", "23505":
		return true
	case "XX000":
		return strings.Contains(pgErr.Message, "concurrently")
	}
	return false
}

func ensureRole(ctx context.Context, conn *pgx.Conn, user, password string) error {
	role, secret := pgx.Identifier{user}.Sanitize(), QuoteLiteral(password)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", user).Scan(&exists); err != nil {
		return fmt.Errorf("looking up role: %w", err)
	}
	if !exists {
		_, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD "+secret)
		if !isCode(err, "42710") { // duplicate_object: created concurrently, alter it below
			return err
		}
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" WITH LOGIN PASSWORD "+secret); err != nil {
		return fmt.Errorf("setting password: %w", err)
	}
	return nil
}

// ensureOwnedDatabase makes sure database name exists, is owned by user
// and may be connected to by its owner only (PUBLIC's CONNECT revoked; the
// owner keeps its default privileges). A missing database is the spare one
// renamed when the cluster has it (takeSpare), else a new one; either way
// it ends up the same: a copy of template1 owned by user, with the same
// privileges.
func (i *Instance) ensureOwnedDatabase(ctx context.Context, conn *pgx.Conn, name, user string) error {
	db, role := pgx.Identifier{name}.Sanitize(), pgx.Identifier{user}.Sanitize()
	var exists, spare bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), EXISTS (SELECT 1 FROM pg_database WHERE datname = $2)",
		name, spareDatabase).Scan(&exists, &spare); err != nil {
		return fmt.Errorf("looking up database: %w", err)
	}
	created := false
	if !exists && spare {
		var err error
		began := time.Now()
		if created, err = takeSpare(ctx, conn, name, user); err != nil {
			return err
		}
		if created {
			i.log.Info("postgres: gave an app the spare database", "dir", i.dir, "database", name, "owner", user, "took", time.Since(began).Round(time.Microsecond))
		} else {
			i.log.Info("postgres: spare database not taken (in use or gone), creating the database", "dir", i.dir, "database", name)
		}
	}
	if !exists && !created {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+db+" OWNER "+role)
		if err != nil && !isCode(err, "42P04") { // duplicate_database: created concurrently
			return fmt.Errorf("creating: %w", err)
		}
		created = err == nil
	}
	if !created {
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" OWNER TO "+role); err != nil {
			return fmt.Errorf("setting owner: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, "REVOKE CONNECT ON DATABASE "+db+" FROM PUBLIC"); err != nil {
		return fmt.Errorf("restricting connections: %w", err)
	}
	return nil
}

// takeSpare makes spareDatabase database name, owned by user, in one
// transaction, and reports whether it did. The spare was created like any
// app database but by and for the superuser, with no privileges granted
// (a NULL datacl, the owner's defaults); ALTER DATABASE ... OWNER TO hands
// those to user, so after ensureOwnedDatabase's REVOKE the database's
// owner and datacl are those of one created for user, and so are its
// objects': a copy of template1 like any other (the public schema belongs
// to pg_database_owner from PostgreSQL 15 on, to the superuser in both
// before). It is not taken when a session is connected to it (the rename
// waits some 5s for it to leave, then fails), or it has gone, or name was
// created meanwhile by a session outside Runway's lock: then the caller
// creates name as without a spare.
func takeSpare(ctx context.Context, conn *pgx.Conn, name, user string) (bool, error) {
	db, role := pgx.Identifier{name}.Sanitize(), pgx.Identifier{user}.Sanitize()
	// No arguments: one simple-protocol query, one implicit transaction.
	_, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{spareDatabase}.Sanitize()+" RENAME TO "+db+"; ALTER DATABASE "+db+" OWNER TO "+role)
	switch {
	case err == nil:
		return true, nil
	case isCode(err, "55006"), isCode(err, "3D000"), isCode(err, "42P04"):
		// object_in_use (someone is connected to the spare),
		// invalid_catalog_name (it has gone), duplicate_database.
		return false, nil
	}
	return false, fmt.Errorf("taking the spare database: %w", err)
}

// QuoteLiteral quotes s as an SQL string literal; with
// standard_conforming_strings on (PostgreSQL's default), only quotes
// need doubling.
func QuoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// connectTimeout bounds one connection attempt to the instance.
const connectTimeout = 5 * time.Second

// connect opens a connection as the superuser over the unix socket, with
// its password. A cluster copied from a template has the template's until
// secure replaces it, which connect tries first then.
func (i *Instance) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	if i.initialPassword != "" {
		conn, err := i.connectWith(ctx, database, i.initialPassword)
		if !refusedPassword(err) {
			return conn, err
		}
		// Replaced already, by a start that ended before forgetting it.
	}
	return i.connectWith(ctx, database, i.password)
}

// connectWith opens a connection as the superuser over the unix socket,
// with password.
func (i *Instance) connectWith(ctx context.Context, database, password string) (*pgx.Conn, error) {
	dsn := strings.Join([]string{
		"host=" + quoteDSN(i.sockDir),
		"port=" + strconv.Itoa(i.port),
		"user=" + superuser,
		"dbname=" + quoteDSN(database),
		"sslmode=disable",
	}, " ")
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("building connection config: %w", err)
	}
	cfg.Password = password
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres in %s: %w", i.dir, err)
	}
	return conn, nil
}

// ping reports whether the server accepts a connection.
func (i *Instance) ping(ctx context.Context) error {
	conn, err := i.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// quoteDSN quotes a keyword/value connection string value.
func quoteDSN(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
