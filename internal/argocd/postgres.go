package argocd

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// The database service: the manifests' postgres entry names its image.
const (
	postgresName = "postgres"
	postgresPort = 5432
	postgresUID  = 999 // the postgres user of the official image
)

// postgresChart renders the chart of an environment's PostgreSQL server:
// a StatefulSet with its volume claim (deleted with it), a headless
// Service, a PostSync hook that gives each app needing the database a
// role and database of its own, and the report hooks.
func (r *renderer) postgresChart() error {
	dir := path.Join(chartDir(postgresName), "templates")
	values := appValues()
	values["databases"] = map[string]any{}
	if err := r.chartMeta(postgresName, "The environment's PostgreSQL server and each app's database on it.", values); err != nil {
		return err
	}
	if err := r.addTemplate(path.Join(dir, "statefulset.yaml"), "", r.statefulSet); err != nil {
		return err
	}
	svc := func(t *template) any {
		s := service(t, postgresName, postgresName, postgresPort, postgresName).(map[string]any)
		s["spec"].(map[string]any)["clusterIP"] = "None"
		return s
	}
	if err := r.addTemplate(path.Join(dir, "service.yaml"), "", svc); err != nil {
		return err
	}
	if err := r.addTemplate(path.Join(dir, "hook-setup.yaml"), "", r.setupJob); err != nil {
		return err
	}
	return r.reportHooks(dir, postgresName, 1)
}

// postgresImage prints the server's image from the manifest entry.
func postgresImage(t *template) string {
	return t.value(`printf "%s:%s" .Values.image .Values.version`)
}

func (r *renderer) statefulSet(t *template) any {
	container := map[string]any{
		"name":  postgresName,
		"image": postgresImage(t),
		"env": []any{
			secretEnv("POSTGRES_PASSWORD", DatabaseSecret, postgresName),
			envVar("PGDATA", "/var/lib/postgresql/data/pgdata"),
		},
		"ports": []any{map[string]any{"name": postgresName, "containerPort": int64(postgresPort), "protocol": "TCP"}},
		"readinessProbe": map[string]any{
			"exec":          map[string]any{"command": []any{"pg_isready", "-U", "postgres", "-h", "127.0.0.1"}},
			"periodSeconds": int64(2),
		},
		"volumeMounts":    []any{map[string]any{"name": "data", "mountPath": "/var/lib/postgresql/data"}},
		"securityContext": restricted(),
	}
	pod := podSecurity()
	pod["runAsUser"] = int64(postgresUID)
	pod["runAsGroup"] = int64(postgresUID)
	pod["fsGroup"] = int64(postgresUID)
	return map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "StatefulSet",
		"metadata":   map[string]any{"name": postgresName, "labels": labels(t, postgresName)},
		"spec": map[string]any{
			"serviceName": postgresName,
			"replicas":    int64(1),
			"selector":    selector(postgresName),
			// The volume goes with the server: an environment leaves
			// nothing behind.
			"persistentVolumeClaimRetentionPolicy": map[string]any{"whenDeleted": "Delete", "whenScaled": "Delete"},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{
					LabelManagedBy: ManagedBy, LabelApp: postgresName, LabelEnv: t.value(".Values.env"), LabelVersion: t.value(".Values.version"),
				}},
				"spec": map[string]any{
					"automountServiceAccountToken": false,
					"securityContext":              pod,
					"containers":                   []any{container},
				},
			},
			"volumeClaimTemplates": []any{map[string]any{
				"metadata": map[string]any{"name": "data", "labels": map[string]any{LabelManagedBy: ManagedBy, LabelApp: postgresName}},
				"spec": map[string]any{
					"accessModes": []any{"ReadWriteOnce"},
					"resources":   map[string]any{"requests": map[string]any{"storage": r.o.DatabaseStorage}},
				},
			}},
		},
	}
}

// databaseApps are the apps that need the database, sorted.
func (r *renderer) databaseApps() []string {
	var names []string
	for _, n := range sortedKeys(r.apps) {
		if slices.Contains(r.apps[n].spec.Needs, postgresName) {
			names = append(names, n)
		}
	}
	return names
}

// setupSQL makes (or updates) the role and database of the app named by
// psql variable app, with the password in variable pw; only that role
// may connect to that database. Idempotent: it runs after every sync.
const setupSQL = `SELECT format('CREATE ROLE %I LOGIN', :'app') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
ALTER ROLE :"app" WITH LOGIN PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'app', :'app') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app') \gexec
REVOKE ALL ON DATABASE :"app" FROM PUBLIC;
GRANT ALL ON DATABASE :"app" TO :"app";
`

// setupJob is the PostSync hook that runs setupSQL for each app needing
// the database, before postgres reports (wave 0, the report is wave 1).
// The export knows every app that may need the database, an environment
// runs only some: value databases (set by the environment chart) says
// which are in this environment's manifest. Only their passwords are
// required (the pod waits for them); the others' keys are optional, as
// the DatabaseSecret of an environment holds only its own apps', and an
// app whose password is absent gets no database.
func (r *renderer) setupJob(t *template) any {
	var script strings.Builder
	script.WriteString("set -eu\nuntil pg_isready --quiet; do sleep 1; done\nready=\n") // PG* from the environment
	env := []any{envVar("PGHOST", postgresName), envVar("PGUSER", "postgres"), envVar("PGDATABASE", "postgres"), secretEnv("PGPASSWORD", DatabaseSecret, postgresName)}
	for _, app := range r.databaseApps() {
		v := "PASSWORD_" + upper(app)
		e := secretEnv(v, DatabaseSecret, app)
		e["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)["optional"] = t.boolean(fmt.Sprintf("not (index .Values.databases %s)", quote(app)))
		env = append(env, e)
		fmt.Fprintf(&script, "if [ -n \"${%s:-}\" ]; then\npsql -v ON_ERROR_STOP=1 -v app=%s -v pw=\"$%s\" <<'SQL'\n%sSQL\nready=\"$ready %s\"\nfi\n", v, app, v, setupSQL, app)
	}
	script.WriteString("echo \"databases ready:$ready\"\n")
	pod := podSecurity()
	pod["runAsUser"] = int64(postgresUID)
	pod["runAsGroup"] = int64(postgresUID)
	return map[string]any{
		"apiVersion": "batch/v1",
		"kind":       "Job",
		"metadata": map[string]any{
			"name":   "postgres-setup",
			"labels": labels(t, postgresName),
			"annotations": map[string]any{
				"argocd.argoproj.io/hook":               "PostSync",
				"argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
				"argocd.argoproj.io/sync-wave":          "0",
			},
		},
		"spec": map[string]any{
			"backoffLimit":          int64(3),
			"activeDeadlineSeconds": int64(hookDeadline),
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels(t, postgresName)},
				"spec": map[string]any{
					"restartPolicy":                "Never",
					"automountServiceAccountToken": false,
					"securityContext":              pod,
					"containers": []any{map[string]any{
						"name":            "setup",
						"image":           postgresImage(t),
						"command":         []any{"/bin/sh", "-c", script.String()},
						"env":             env,
						"securityContext": restricted(),
					}},
				},
			},
		},
	}
}
