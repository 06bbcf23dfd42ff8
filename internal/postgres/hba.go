package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/internal/atomicfile"
)

const (
	// hbaFile is PostgreSQL's client authentication file, in the data dir.
	hbaFile = "pg_hba.conf"
	// reloadTimeout bounds the wait for the server to load a new hbaFile.
	reloadTimeout = 10 * time.Second
)

// hbaEntry lets one app role reach one database over TCP.
type hbaEntry struct {
	database, role string
}

// hbaContent is the whole pg_hba.conf Runway writes: the superuser over
// the unix socket, each app role to its own database over loopback TCP,
// all with scram-sha-256, and nothing else: any other connection matches
// no line and is refused. Names are quoted so that one spelled like a
// keyword (all, replication, sameuser) means only itself.
func hbaContent(entries []hbaEntry) string {
	var b strings.Builder
	b.WriteString("# Written by Runway whenever an app database is added; edits are overwritten.\n")
	b.WriteString("# Connections matching no line are refused.\n")
	b.WriteString("# TYPE  DATABASE  USER  ADDRESS  METHOD\n")
	fmt.Fprintf(&b, "local all %s scram-sha-256\n", superuser)
	for _, e := range entries {
		fmt.Fprintf(&b, "host \"%s\" \"%s\" %s/32 scram-sha-256\n", e.database, e.role, loopback)
	}
	return b.String()
}

// writeHBA makes dataDir/pg_hba.conf hold content and reports whether it
// changed. The new file is one of its own, owned like dataDir (the server's
// OS user must read it), renamed into place: never written through a
// symlink the server's user may have planted.
func writeHBA(dataDir, content string) (changed bool, err error) {
	path := filepath.Join(dataDir, hbaFile)
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, []byte(content)) {
		return false, nil
	}
	dir, err := os.Stat(dataDir)
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", hbaFile, err)
	}
	uid, gid := -1, -1
	if st, ok := dir.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	if err := atomicfile.WriteOwned(path, []byte(content), 0o600, uid, gid); err != nil {
		return false, fmt.Errorf("writing %s: %w", hbaFile, err)
	}
	return true, nil
}

// hbaEntries lists, from the catalog, each database owned by a login role
// that is not a superuser: the app databases EnsureDatabase made. Names
// Runway would not have created (an operator's) are left out.
func (i *Instance) hbaEntries(ctx context.Context, conn *pgx.Conn) ([]hbaEntry, error) {
	rows, err := conn.Query(ctx, `SELECT d.datname, r.rolname
		FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
		WHERE r.rolcanlogin AND NOT r.rolsuper AND NOT d.datistemplate`)
	if err != nil {
		return nil, fmt.Errorf("listing app databases: %w", err)
	}
	var entries []hbaEntry
	for rows.Next() {
		var e hbaEntry
		if err := rows.Scan(&e.database, &e.role); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing app databases: %w", err)
		}
		if validateName("database", e.database) != nil || validateName("user", e.role) != nil {
			i.log.Warn("postgres: database not reachable by its owner: a name Runway does not use", "dir", i.dir, "database", e.database, "owner", e.role)
			continue
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing app databases: %w", err)
	}
	slices.SortFunc(entries, func(a, b hbaEntry) int {
		return strings.Compare(a.database+"\x00"+a.role, b.database+"\x00"+b.role)
	})
	return entries, nil
}

// syncHBA rewrites pg_hba.conf from the catalog and, when it changed, has
// the server load it, returning once new connections are checked against
// it.
func (i *Instance) syncHBA(ctx context.Context, conn *pgx.Conn) error {
	entries, err := i.hbaEntries(ctx, conn)
	if err != nil {
		return err
	}
	changed, err := writeHBA(i.dataDir, hbaContent(entries))
	if err != nil || !changed {
		return err
	}
	var bad []string
	rows, err := conn.Query(ctx, "SELECT coalesce(line_number, 0), error FROM pg_hba_file_rules WHERE error IS NOT NULL")
	if err != nil {
		return fmt.Errorf("checking %s: %w", hbaFile, err)
	}
	for rows.Next() {
		var line int32
		var msg string
		if err := rows.Scan(&line, &msg); err != nil {
			rows.Close()
			return fmt.Errorf("checking %s: %w", hbaFile, err)
		}
		bad = append(bad, fmt.Sprintf("line %d: %s", line, msg))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking %s: %w", hbaFile, err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("the server rejects the %s Runway wrote: %s", hbaFile, strings.Join(bad, "; "))
	}
	if err := i.reload(ctx, conn); err != nil {
		return err
	}
	i.log.Info("postgres: client authentication updated", "dir", i.dir, "appDatabases", len(entries))
	return nil
}

// reload has the server re-read its configuration and waits until a new
// connection is served with it: the postmaster reloads asynchronously, and
// the time a fresh backend reports as its configuration's load time is the
// postmaster's.
func (i *Instance) reload(ctx context.Context, conn *pgx.Conn) error {
	var before time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&before); err != nil {
		return fmt.Errorf("reading the server's configuration load time: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reloading the server's configuration: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	p := newPoller()
	defer p.stop()
	for {
		loaded, err := i.confLoadTime(ctx)
		if err == nil && loaded.After(before) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the server to reload its configuration: %w (last check: %v)", ctx.Err(), err)
		case <-p.wait():
		}
	}
}

// confLoadTime is pg_conf_load_time() of a new session.
func (i *Instance) confLoadTime(ctx context.Context) (time.Time, error) {
	c, err := i.connect(ctx, "postgres")
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var t time.Time
	err = c.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&t)
	return t, err
}
