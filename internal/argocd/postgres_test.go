package argocd

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/test/cluster"
)

// The postgres chart's setup hook, run on this machine against a real
// PostgreSQL server with the Job's own script and environment (only the
// server's address and superuser differ from the cluster's), gives each
// app a role and database of its own, again and again.
func TestPostgresSetupHook(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql is not installed")
	}
	host, port, admin, adminPassword := startPostgres(t)
	o, _ := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := helmTemplate(files, "charts/postgres", map[string]any{"env": "v1", "image": "postgres", "version": "15", "databases": map[string]any{"homelabping": true}})
	if err != nil {
		t.Fatal(err)
	}
	secret := map[string]string{postgresName: adminPassword, "homelabping": "pw-homelabping"}
	var script string
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, obj := range objs {
		if obj["metadata"].(map[string]any)["name"] != "postgres-setup" {
			continue
		}
		c := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		script = c["command"].([]any)[2].(string)
		for _, e := range c["env"].([]any) {
			e := e.(map[string]any)
			value, _ := e["value"].(string)
			if from, ok := e["valueFrom"].(map[string]any); ok {
				ref := from["secretKeyRef"].(map[string]any)
				value = secret[ref["key"].(string)]
			}
			env = append(env, e["name"].(string)+"="+value)
		}
	}
	if script == "" {
		t.Fatal("no postgres-setup Job rendered")
	}
	env = append(env, "PGHOST="+host, "PGPORT="+port, "PGUSER="+admin) // later ones win
	for run := range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("setup run %d: %v\n%s", run+1, err, out)
		}
	}
	// An app whose (optional) password is absent gets no database and
	// does not fail the hook.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(env, "PASSWORD_HOMELABPING=")
	out, err := cmd.CombinedOutput()
	cancel()
	if err != nil || !strings.Contains(string(out), "databases ready:\n") {
		t.Fatalf("setup without homelabping's password: %v\n%s", err, out)
	}
	dsn := func(user, password, db string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: net.JoinHostPort(host, port), Path: "/" + db, RawQuery: "sslmode=disable"}
		return u.String()
	}
	conn, err := pgx.Connect(t.Context(), dsn("homelabping", "pw-homelabping", "homelabping"))
	if err != nil {
		t.Fatalf("the app's role cannot reach its database: %v", err)
	}
	var owner string
	if err := conn.QueryRow(t.Context(), "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&owner); err != nil || owner != "homelabping" {
		t.Errorf("database owner %q, %v; want homelabping", owner, err)
	}
	conn.Close(t.Context())
	// Another role may not connect to the app's database.
	aconn, err := pgx.Connect(t.Context(), dsn(admin, adminPassword, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer aconn.Close(t.Context())
	if _, err := aconn.Exec(t.Context(), "CREATE ROLE intruder LOGIN PASSWORD 'pw-intruder'"); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(t.Context(), dsn("intruder", "pw-intruder", "homelabping")); err == nil {
		c.Close(t.Context())
		t.Error("another role connected to the app's database")
	} else if !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("another role's connection: %v, want permission denied", err)
	}
}

// The setup hook requires the password of only the environment's apps:
// another app's key is optional, so its absence does not hold the pod
// to its deadline, and the environment chart says which apps are the
// environment's.
func TestPostgresSetupRequiresOnlyEnvironmentApps(t *testing.T) {
	o, _ := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	pg := map[string]any{"images": map[string]any{"code": map[string]any{"image": "postgres", "image_tag": "15"}}}
	for _, tt := range []struct {
		apps         map[string]any
		wantOptional bool
	}{
		{map[string]any{"postgres": pg, "homelabping": map[string]any{"images": map[string]any{"code": map[string]any{"image": "homelabping", "image_tag": "v1"}}}}, false},
		{map[string]any{"postgres": pg}, true},
	} {
		env, err := helmTemplate(files, "charts/environment", map[string]any{"env": "v1", "apps": tt.apps})
		if err != nil {
			t.Fatal(err)
		}
		var values map[string]any
		for _, obj := range env {
			if obj["kind"] == "Application" && obj["metadata"].(map[string]any)["name"] == "v1-postgres" {
				values = obj["spec"].(map[string]any)["source"].(map[string]any)["helm"].(map[string]any)["valuesObject"].(map[string]any)
			}
		}
		if values == nil {
			t.Fatal("no postgres Application rendered")
		}
		objs, err := helmTemplate(files, "charts/postgres", values)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, obj := range objs {
			if obj["metadata"].(map[string]any)["name"] != "postgres-setup" {
				continue
			}
			c := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			for _, e := range c["env"].([]any) {
				e := e.(map[string]any)
				from, ok := e["valueFrom"].(map[string]any)
				if !ok {
					continue
				}
				ref := from["secretKeyRef"].(map[string]any)
				optional, _ := ref["optional"].(bool)
				switch ref["key"] {
				case "homelabping":
					found = true
					if optional != tt.wantOptional {
						t.Errorf("apps %v: homelabping's password optional=%v, want %v", tt.apps, optional, tt.wantOptional)
					}
				case postgresName:
					if optional {
						t.Errorf("the server's password is optional")
					}
				}
			}
		}
		if !found {
			t.Fatal("the setup hook reads no homelabping password")
		}
	}
}

// startPostgres starts a PostgreSQL server for the test, admitting every
// role by password over loopback TCP as a cluster's server would, and
// returns its address and superuser.
func startPostgres(t *testing.T) (host, port, user, password string) {
	t.Helper()
	u, err := url.Parse(cluster.PostgresAdmin(t))
	if err != nil {
		t.Fatal(err)
	}
	password, _ = u.User.Password()
	return u.Hostname(), u.Port(), u.User.Username(), password
}
