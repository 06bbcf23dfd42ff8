package postgres

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// dbInfo is what makes one app database like another: its catalog row
// and, inside it, the public schema and the number of relations. Role
// names in ACLs are replaced by OWNER when they are the owner's.
type dbInfo struct {
	oid                      uint32
	owner                    string
	acl                      string
	encoding                 int32
	collate, ctype           string
	isTemplate, allowConn    bool
	connLimit                int32
	tablespace               string
	publicOwner, publicACL   string
	relations, namespaces    int64
	ownerCanCreateInPublic   bool
	publicCanConnect         bool
	publicCanCreateInPublic  bool
	otherRoleCanConnect      bool
	otherRoleCanUsePublicSch bool
}

// describeDatabase reads dbInfo of name as the superuser; other is a role
// that does not own it.
func describeDatabase(t *testing.T, inst *Instance, name, other string) dbInfo {
	t.Helper()
	ctx := t.Context()
	conn, err := inst.connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var d dbInfo
	err = conn.QueryRow(ctx, `SELECT d.oid, r.rolname, coalesce(d.datacl::text, 'NULL'), d.encoding, d.datcollate, d.datctype,
			d.datistemplate, d.datallowconn, d.datconnlimit, t.spcname,
			has_database_privilege('public', d.oid, 'CONNECT'),
			has_database_privilege($2, d.oid, 'CONNECT')
		FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba JOIN pg_tablespace t ON t.oid = d.dattablespace
		WHERE d.datname = $1`, name, other).Scan(
		&d.oid, &d.owner, &d.acl, &d.encoding, &d.collate, &d.ctype,
		&d.isTemplate, &d.allowConn, &d.connLimit, &d.tablespace,
		&d.publicCanConnect, &d.otherRoleCanConnect)
	if err != nil {
		t.Fatalf("describing database %s: %v", name, err)
	}
	d.acl = strings.ReplaceAll(d.acl, d.owner, "OWNER")

	in, err := inst.connect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	err = in.QueryRow(ctx, `SELECT n.nspowner::regrole::text, coalesce(n.nspacl::text, 'NULL'),
			(SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_namespace),
			has_schema_privilege($1, 'public', 'CREATE'),
			has_schema_privilege('public', 'public', 'CREATE'),
			has_schema_privilege($2, 'public', 'USAGE')
		FROM pg_namespace n WHERE n.nspname = 'public'`, d.owner, other).Scan(
		&d.publicOwner, &d.publicACL, &d.relations, &d.namespaces,
		&d.ownerCanCreateInPublic, &d.publicCanCreateInPublic, &d.otherRoleCanUsePublicSch)
	if err != nil {
		t.Fatalf("describing the public schema of %s: %v", name, err)
	}
	d.publicOwner = strings.ReplaceAll(d.publicOwner, d.owner, "OWNER")
	d.publicACL = strings.ReplaceAll(d.publicACL, d.owner, "OWNER")
	return d
}

// databases lists the cluster's databases.
func databases(t *testing.T, inst *Instance) []string {
	t.Helper()
	conn, err := inst.connect(t.Context(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT datname FROM pg_database ORDER BY datname")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestTemplateHasSpare checks what a template holds: the spare database,
// owned by the superuser, in a cluster shut down cleanly, and nothing its
// server left behind.
func TestTemplateHasSpare(t *testing.T) {
	base := t.TempDir()
	templates := filepath.Join(base, "templates")
	inst, err := startFromTemplate(t, filepath.Join(base, "env"), templates)
	if err != nil {
		t.Fatal(err)
	}
	built := finishedTemplates(t, templates)
	if len(built) != 1 {
		t.Fatalf("templates %v, want one", built)
	}
	entries, err := os.ReadDir(built[0])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{templateData, templatePassword}) {
		t.Fatalf("template holds %v, want only %s and %s", names, templateData, templatePassword)
	}
	data := filepath.Join(built[0], templateData)
	for _, f := range []string{"postmaster.pid", "postmaster.opts"} {
		if _, err := os.Stat(filepath.Join(data, f)); !os.IsNotExist(err) {
			t.Fatalf("template has %s (%v)", f, err)
		}
	}
	out, err := exec.Command(filepath.Join(inst.binDirForTest(t), "pg_controldata"), "-D", data).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "Database cluster state:               shut down\n") {
		t.Fatalf("template cluster not shut down cleanly:\n%s", out)
	}
	if got := databases(t, inst); !slices.Contains(got, spareDatabase) {
		t.Fatalf("databases of a copy %v, want %s among them", got, spareDatabase)
	}
	var owner string
	conn, err := inst.connect(t.Context(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(t.Context(), "SELECT datdba::regrole::text FROM pg_database WHERE datname = $1", spareDatabase).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != superuser {
		t.Fatalf("spare owned by %s, want %s", owner, superuser)
	}
}

// binDirForTest is the PostgreSQL bin dir tests run with.
func (i *Instance) binDirForTest(t *testing.T) string {
	t.Helper()
	cfg, err := Config{SecretsDir: i.secretsDir}.withDefaults(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.BinDir
}

// TestEnsureDatabaseTakesSpare gives the first app of a copied cluster the
// spare database and a second app a new one, and compares the two: same
// owner, privileges and contents but for the role's name.
func TestEnsureDatabaseTakesSpare(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	inst, err := startFromTemplate(t, filepath.Join(base, "env"), filepath.Join(base, "templates"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := inst.connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var spareOID uint32
	if err := conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = $1", spareDatabase).Scan(&spareOID); err != nil {
		t.Fatalf("the copy has no spare database: %v", err)
	}

	shop, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase shop: %v", err)
	}
	if got := databases(t, inst); slices.Contains(got, spareDatabase) || !slices.Contains(got, "shop") {
		t.Fatalf("databases after the first app: %v, want shop and no %s", got, spareDatabase)
	}
	blog, err := inst.EnsureDatabase(ctx, "blog", "blog")
	if err != nil {
		t.Fatalf("EnsureDatabase blog: %v", err)
	}
	for _, c := range []Conn{shop, blog} {
		if got := queryAsApp(t, c); got != "pong" {
			t.Fatalf("%s query = %q", c.Database, got)
		}
	}
	shopInfo, blogInfo := describeDatabase(t, inst, "shop", "blog"), describeDatabase(t, inst, "blog", "shop")
	if shopInfo.oid != spareOID {
		t.Fatalf("shop has oid %d, want the spare's %d: it was not renamed", shopInfo.oid, spareOID)
	}
	if blogInfo.oid == spareOID {
		t.Fatal("blog got the spare's oid")
	}
	if shopInfo.owner != "shop" || blogInfo.owner != "blog" {
		t.Fatalf("owners %s and %s, want shop and blog", shopInfo.owner, blogInfo.owner)
	}
	if shopInfo.publicCanConnect || shopInfo.otherRoleCanConnect {
		t.Fatalf("shop: PUBLIC or another role may connect: %+v", shopInfo)
	}
	shopInfo.oid, blogInfo.oid = 0, 0
	shopInfo.owner, blogInfo.owner = "", ""
	shopInfo.relations, blogInfo.relations = 0, 0 // queryAsApp made a table in each; compared below
	if shopInfo != blogInfo {
		t.Fatalf("the spare taken differs from a database created for an app:\nshop %+v\nblog %+v", shopInfo, blogInfo)
	}
	t.Logf("both: %+v", shopInfo)

	// Idempotent: nothing changes the second time.
	hba, err := os.ReadFile(filepath.Join(inst.dataDir, hbaFile))
	if err != nil {
		t.Fatal(err)
	}
	before := describeDatabase(t, inst, "shop", "blog")
	again, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase shop again: %v", err)
	}
	if again != shop {
		t.Fatalf("EnsureDatabase again = %+v, want %+v", again, shop)
	}
	if after := describeDatabase(t, inst, "shop", "blog"); after != before {
		t.Fatalf("EnsureDatabase again changed shop:\nbefore %+v\nafter  %+v", before, after)
	}
	if hba2, err := os.ReadFile(filepath.Join(inst.dataDir, hbaFile)); err != nil || string(hba2) != string(hba) {
		t.Fatalf("EnsureDatabase again changed %s (%v):\n%s\nwas:\n%s", hbaFile, err, hba2, hba)
	}
	if !strings.Contains(string(hba), `host "shop" "shop" 127.0.0.1/32 scram-sha-256`) || strings.Contains(string(hba), spareDatabase) {
		t.Fatalf("%s:\n%s", hbaFile, hba)
	}
	checkHBA(t, inst)

	// Relations: a table made by the app in each, else template1's.
	if shopRel, blogRel := describeDatabase(t, inst, "shop", "blog").relations, describeDatabase(t, inst, "blog", "shop").relations; shopRel != blogRel {
		t.Fatalf("relations: shop %d, blog %d", shopRel, blogRel)
	}
}

// TestSpareInUse: a session connected to the spare keeps it from being
// taken; the app's database is created instead, and the spare goes to the
// next app once the session has left.
func TestSpareInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("the rename waits 5s for the session to leave")
	}
	ctx := t.Context()
	base := t.TempDir()
	inst, err := startFromTemplate(t, filepath.Join(base, "env"), filepath.Join(base, "templates"))
	if err != nil {
		t.Fatal(err)
	}
	squatter, err := inst.connect(ctx, spareDatabase)
	if err != nil {
		t.Fatal(err)
	}
	shop, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase with the spare in use: %v", err)
	}
	if got := databases(t, inst); !slices.Contains(got, spareDatabase) || !slices.Contains(got, "shop") {
		t.Fatalf("databases %v, want shop and %s", got, spareDatabase)
	}
	if got := queryAsApp(t, shop); got != "pong" {
		t.Fatalf("query = %q", got)
	}
	if err := squatter.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.EnsureDatabase(ctx, "blog", "blog"); err != nil {
		t.Fatal(err)
	}
	if got := databases(t, inst); slices.Contains(got, spareDatabase) {
		t.Fatalf("databases %v: the spare was not taken once free", got)
	}
}
