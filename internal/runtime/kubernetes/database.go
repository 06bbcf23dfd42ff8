package kubernetes

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/runtime"
)

const (
	// pgTimeout bounds one conversation with the PostgreSQL server.
	pgTimeout = 30 * time.Second
	// pgLockKey is the advisory lock under which roles and databases
	// change on the server: concurrent changes of one catalog row fail
	// rather than wait, so callers (of every runtime on the server) take
	// turns.
	pgLockKey = 0x72756e776179 // "runway"
	// passwordKey is the Secret key of an app's database password.
	passwordKey = "PGPASSWORD"
)

// EnsurePostgres implements runtime.Databases: the server is an existing
// one (Options.PostgresAdminURL), so this checks that it answers and
// marks env's namespace (made if missing) as having databases there.
func (r *Runtime) EnsurePostgres(ctx context.Context, env string) error {
	if err := runtime.CheckName("environment", env); err != nil {
		return fmt.Errorf("ensuring postgres: %w", err)
	}
	what := "ensuring postgres of " + env
	if r.pg == nil {
		return fmt.Errorf("%s: %w: the Kubernetes runtime has no PostgreSQL server (PostgresAdminURL)", what, runtime.ErrUnsatisfiable)
	}
	if err := r.pg.ping(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := r.ensureNamespace(ctx, env, map[string]string{AnnotationPostgres: "true"}); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Database implements runtime.Databases: a login role and a database it
// owns, which no other role may connect to, for app in env on the
// server, named by dbName. The password is random, made on the first call
// and kept in the Secret db.<app> of env's namespace (with the settings
// the app gets), so every call, after a restart too, gives the same
// settings. The role is set to it on every call, as a SCRAM verifier:
// the password itself never reaches the server.
func (r *Runtime) Database(ctx context.Context, env, app string) (runtime.Database, error) {
	if err := errors.Join(runtime.CheckName("environment", env), runtime.CheckName("app", app)); err != nil {
		return nil, fmt.Errorf("making a database: %w", err)
	}
	what := fmt.Sprintf("making the database of %s in %s", app, env)
	if r.pg == nil {
		return nil, fmt.Errorf("%s: %w: the Kubernetes runtime has no PostgreSQL server (PostgresAdminURL)", what, runtime.ErrUnsatisfiable)
	}
	if strings.HasPrefix(app, "pg-") {
		// As on the local runtime, where the role is the app's name and
		// pg_ roles are PostgreSQL's: an app spec runs on both or neither.
		return nil, fmt.Errorf("%s: %w: roles named pg_... are PostgreSQL's own", what, runtime.ErrUnsatisfiable)
	}
	ns, err := r.liveNamespace(ctx, env)
	switch {
	case errors.Is(err, errNoNamespace):
		return nil, fmt.Errorf("%s: %w: the environment has no database server (no EnsurePostgres)", what, runtime.ErrUnsatisfiable)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	case ns.Annotations[AnnotationPostgres] != "true":
		return nil, fmt.Errorf("%s: %w: the environment has no database server (no EnsurePostgres)", what, runtime.ErrUnsatisfiable)
	}
	password, err := r.databasePassword(ctx, env, app)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	name := dbName(ns.Name, app)
	comment := fmt.Sprintf("runway env=%s namespace=%s app=%s", env, ns.Name, app)
	if err := r.pg.ensure(ctx, name, password, comment); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	db := r.pg.settings(name, password)
	r.mu.Lock()
	r.dbEnvs[env] = true
	r.mu.Unlock()
	data := map[string][]byte{}
	for _, kv := range db.vars {
		k, v, _ := strings.Cut(kv, "=")
		data[k] = []byte(v)
	}
	if err := r.ensureSecret(ctx, ns.Name, dbSecretName(app), dbSecretLabels(env, app), KindDatabase, data, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return db, nil
}

// databasePassword is app's password in env, made and kept in the
// app's database Secret on first use, and given to the redactor
// (Options.Secrets) however it was had. The Secret must carry the labels
// of app's database Secret: a Secret of that name that is anything else
// is refused. A password kept under the name older runtimes used
// (legacyDBSecretName) is taken over, so a restart does not change it.
func (r *Runtime) databasePassword(ctx context.Context, env, app string) (string, error) {
	ns, name := r.Namespace(env), dbSecretName(app)
	for attempt := 0; ; attempt++ {
		s, err := r.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			password, err := dbSecretPassword(s, env, app)
			if err != nil {
				return "", err
			}
			r.learn(password)
			return password, nil
		}
		if !apierrors.IsNotFound(err) || attempt > 0 {
			return "", apiError("getting Secret "+ns+"/"+name, err)
		}
		password, err := r.legacyPassword(ctx, env, app)
		if err != nil {
			return "", err
		}
		if password == "" {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return "", fmt.Errorf("making a password: %w", err)
			}
			password = hex.EncodeToString(b)
		}
		// Learnt before it is stored: nothing may show it unredacted.
		r.learn(password)
		s = newSecret(ns, name, dbSecretLabels(env, app), map[string][]byte{passwordKey: []byte(password)})
		_, err = r.cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
		if err == nil {
			return password, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return "", apiError("creating Secret "+ns+"/"+name, err)
		}
		// Another call made it first: take its password.
	}
}

// legacyPassword is the password older runtimes kept in the Secret
// legacyDBSecretName(app), if there is one with the labels of app's
// database Secret; "" if not.
func (r *Runtime) legacyPassword(ctx context.Context, env, app string) (string, error) {
	ns, name := r.Namespace(env), legacyDBSecretName(app)
	s, err := r.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", apiError("getting Secret "+ns+"/"+name, err)
	}
	password, err := dbSecretPassword(s, env, app)
	if err != nil {
		return "", nil // another's (a workload's variables, say): not ours
	}
	return password, nil
}

// dbSecretLabels are the labels of app's database Secret in env.
func dbSecretLabels(env, app string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelApp: app, LabelKind: KindDatabase}
}

// dbSecretPassword is the password in s if s is app's database Secret
// in env (by its labels).
func dbSecretPassword(s *corev1.Secret, env, app string) (string, error) {
	for k, v := range dbSecretLabels(env, app) {
		if s.Labels[k] != v {
			return "", fmt.Errorf("the Secret %s/%s is not Runway's database Secret of %s (label %s=%q, not %q): refusing to use it",
				s.Namespace, s.Name, app, k, s.Labels[k], v)
		}
	}
	if len(s.Data[passwordKey]) == 0 {
		return "", fmt.Errorf("the Secret %s/%s holds no %s: refusing to use it", s.Namespace, s.Name, passwordKey)
	}
	return string(s.Data[passwordKey]), nil
}

// learn gives a password to the redactor, if there is one.
func (r *Runtime) learn(password string) {
	if r.secrets != nil && password != "" {
		r.secrets.Add(password)
	}
}

// dropDatabases drops every database and role of env on the server,
// ending their connections first.
func (r *Runtime) dropDatabases(ctx context.Context, env string) error {
	if err := r.pg.drop(ctx, dbPrefix(r.Namespace(env))); err != nil {
		return fmt.Errorf("dropping the databases of %s: %w", env, err)
	}
	return nil
}

// seedDatabaseEnvs finds the environments of this runtime with databases
// on the server (from the databases' comments), so that Envs lists them
// after a restart even when their namespace is gone. A failure is only
// logged: the server may be down while the cluster is not.
func (r *Runtime) seedDatabaseEnvs(ctx context.Context) {
	envs, err := r.pg.envs(ctx)
	if err != nil {
		r.log.Warn("listing the environments with databases", "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for ns, env := range envs {
		if r.owns(ns, env) {
			r.dbEnvs[env] = true
		}
	}
}

// database is what an app gets to reach its database.
type database struct{ vars []string }

// Env implements runtime.Database.
func (d database) Env() []string { return append([]string(nil), d.vars...) }

// settings are the variables of the database and role name, password.
func (s *postgresServer) settings(name, password string) database {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(name, password),
		Host:   net.JoinHostPort(s.host, strconv.Itoa(s.port)),
		Path:   "/" + name,
	}
	vars := []string{
		"PGHOST=" + s.host,
		"PGPORT=" + strconv.Itoa(s.port),
		"PGUSER=" + name,
		"PGPASSWORD=" + password,
		"PGDATABASE=" + name,
	}
	if s.sslmode != "" {
		u.RawQuery = url.Values{"sslmode": {s.sslmode}}.Encode()
		vars = append(vars, "PGSSLMODE="+s.sslmode)
	}
	return database{vars: append(vars, "DATABASE_URL="+u.String())}
}

// connect opens an admin session, under the lock of role and database
// changes.
func (s *postgresServer) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the PostgreSQL server at %s: %w", s.display(), err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(pgLockKey)); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("waiting for other sessions on %s: %w", s.display(), err)
	}
	return conn, nil
}

// display is the server's address for messages (never its password).
func (s *postgresServer) display() string {
	u, err := url.Parse(s.adminURL)
	if err != nil {
		return "(unparsable admin URL)"
	}
	return u.Host
}

// ping checks the server answers.
func (s *postgresServer) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return fmt.Errorf("connecting to the PostgreSQL server at %s: %w", s.display(), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// ensure makes the login role name with password and the database name
// it owns, which only its owner (and superusers) may connect to.
func (s *postgresServer) ensure(ctx context.Context, name, password, comment string) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	var roleExists, dbExists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&roleExists); err != nil {
		return fmt.Errorf("looking up role %s: %w", name, err)
	}
	roleSQL := "ALTER ROLE " + ident + " WITH LOGIN PASSWORD " + postgres.QuoteLiteral(verifier)
	if !roleExists {
		roleSQL = "CREATE ROLE " + ident + " WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD " + postgres.QuoteLiteral(verifier)
	}
	if _, err := conn.Exec(ctx, roleSQL); err != nil {
		return fmt.Errorf("making role %s: %w", name, err)
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&dbExists); err != nil {
		return fmt.Errorf("looking up database %s: %w", name, err)
	}
	steps := []struct{ what, sql string }{
		{"revoking the public's access to database " + name, "REVOKE ALL ON DATABASE " + ident + " FROM PUBLIC"},
		{"granting its owner access to database " + name, "GRANT ALL ON DATABASE " + ident + " TO " + ident},
		{"describing database " + name, "COMMENT ON DATABASE " + ident + " IS " + postgres.QuoteLiteral(comment)},
	}
	if !dbExists {
		steps = append([]struct{ what, sql string }{{"creating database " + name, "CREATE DATABASE " + ident + " OWNER " + ident}}, steps...)
	}
	for _, st := range steps {
		if _, err := conn.Exec(ctx, st.sql); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return nil
}

// drop drops every database and role whose name starts with prefix,
// their connections ended first.
func (s *postgresServer) drop(ctx context.Context, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	dbs, err := names(ctx, conn, "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY 1", prefix)
	if err != nil {
		return fmt.Errorf("listing databases: %w", err)
	}
	for _, db := range dbs {
		if err := dropDatabase(ctx, conn, db); err != nil {
			return err
		}
	}
	roles, err := names(ctx, conn, "SELECT rolname FROM pg_roles WHERE left(rolname, length($1)) = $1 ORDER BY 1", prefix)
	if err != nil {
		return fmt.Errorf("listing roles: %w", err)
	}
	for _, role := range roles {
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role); err != nil {
			return fmt.Errorf("ending the sessions of role %s: %w", role, err)
		}
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			return fmt.Errorf("dropping role %s: %w", role, err)
		}
	}
	return nil
}

// dropDatabase ends db's sessions, refusing new ones, and drops it; a
// session that slipped in between is ended and the drop tried again.
func dropDatabase(ctx context.Context, conn *pgx.Conn, db string) error {
	ident := pgx.Identifier{db}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("closing database %s to new sessions: %w", db, err)
	}
	for attempt := 1; ; attempt++ {
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db); err != nil {
			return fmt.Errorf("ending the sessions of database %s: %w", db, err)
		}
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident)
		var pgErr *pgconn.PgError
		if err == nil {
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 10 { // object_in_use
			return fmt.Errorf("dropping database %s: %w", db, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dropping database %s: %w", db, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// envs maps the namespaces of the databases Runway made on the server
// (from their comments) to their environments.
func (s *postgresServer) envs(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the PostgreSQL server at %s: %w", s.display(), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	comments, err := names(ctx, conn, "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE left(datname, length($1)) = $1", "rw_")
	if err != nil {
		return nil, fmt.Errorf("listing databases: %w", err)
	}
	out := map[string]string{}
	for _, c := range comments {
		fields := map[string]string{}
		rest, ok := strings.CutPrefix(c, "runway ")
		if !ok {
			continue
		}
		for f := range strings.FieldsSeq(rest) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		if fields["namespace"] != "" && fields["env"] != "" {
			out[fields["namespace"]] = fields["env"]
		}
	}
	return out, nil
}

// names runs a query of one text column.
func names(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// scramVerifier is password's SCRAM-SHA-256 verifier as PostgreSQL
// stores it (RFC 7677, 4096 iterations, a random salt): given as a
// role's PASSWORD, the server keeps it as it is.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("making a salt: %w", err)
	}
	const iterations = 4096
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("hashing a password: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server)), nil
}
