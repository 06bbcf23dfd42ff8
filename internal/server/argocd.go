package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/runway-cd/runway/internal/argocd"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/kubernetes"
)

// argoCDPlane prepares the environments Argo CD syncs (runtime argocd):
// before the export's charts can run in an environment, its namespace
// must exist with the two Secrets they read, which only Runway can
// write: ReporterSecret, each workflow's reporter token at the key named
// after it (the report hooks'), and DatabaseSecret, the PostgreSQL
// passwords (key postgres for the server, one per app). The namespace
// is made as the environment chart makes it, so Argo CD adopts it and
// deletes it with the environment. And the charts' images must be in the
// registry: each app's version is pushed as <registry>/<app>:<version>,
// the image the export's charts name.
type argoCDPlane struct {
	kube    k8s.Interface
	prefix  string
	tokens  reporterTokens
	secrets secretSink
	// push builds and pushes the image of app's version (idempotent).
	push func(ctx context.Context, env, app, version string) error
	log  *slog.Logger

	mu sync.Mutex
	// pushed are the app:version images pushed by this process.
	pushed map[string]bool
	// postgres is whether each environment's last prepared manifest has
	// the postgres service (its apps' databases are on it).
	postgres map[string]bool
}

// reporterTokens hands out a workflow's reporter token
// (*reporter.Reporter).
type reporterTokens interface {
	Token(ctx context.Context, workflow string) (string, error)
}

// secretSink learns secrets to mask (*redact.Redactor).
type secretSink interface{ Add(secrets ...string) }

var _ environment.Synced = (*argoCDPlane)(nil)

// Prepare makes m's namespace and Secrets. A workflow not submitted yet
// has no token: the Secret is written without it and Prepare asks to be
// called again (environment.ErrPrepareAgain); the hook's pod waits for
// its key meanwhile.
func (a *argoCDPlane) Prepare(ctx context.Context, m *manifest.Manifest) error {
	env := m.EnvName
	ns, err := a.namespace(ctx, env)
	if err != nil {
		return err
	}
	tokens := map[string]string{}
	var pending []string
	for _, app := range m.AppNames() {
		wf := m.Workflow(app)
		if wf == "" || tokens[wf] != "" || slices.Contains(pending, wf) {
			continue
		}
		tok, err := a.tokens.Token(ctx, wf)
		switch {
		case errors.Is(err, reporter.ErrNotFound):
			pending = append(pending, wf)
			continue
		case err != nil:
			return fmt.Errorf("reading the reporter token of %s: %w", wf, err)
		}
		a.secrets.Add(tok)
		tokens[wf] = tok
	}
	// The tokens of the workflows m names, and no other; a token the
	// reporter cannot give now but the Secret has is kept (a hook may be
	// reading it).
	if err := a.writeSecret(ctx, ns, argocd.ReporterSecret, env, func(old map[string][]byte) (map[string][]byte, error) {
		out := map[string][]byte{}
		for wf, tok := range tokens {
			out[wf] = []byte(tok)
		}
		for _, wf := range pending {
			if v := old[wf]; len(v) > 0 {
				out[wf] = v
			}
		}
		return out, nil
	}); err != nil {
		return err
	}
	hasPostgres := false
	keys := []string{}
	for _, app := range m.AppNames() {
		if app == "postgres" {
			hasPostgres = true
		}
		keys = append(keys, app) // "postgres" is the server's
	}
	// Passwords are made once and kept: the database was initialised
	// with them.
	if err := a.writeSecret(ctx, ns, argocd.DatabaseSecret, env, func(old map[string][]byte) (map[string][]byte, error) {
		out := maps.Clone(old)
		if out == nil {
			out = map[string][]byte{}
		}
		for _, k := range keys {
			if len(out[k]) > 0 {
				a.secrets.Add(string(out[k]))
				continue
			}
			pw, err := password()
			if err != nil {
				return nil, err
			}
			a.secrets.Add(pw)
			out[k] = []byte(pw)
		}
		return out, nil
	}); err != nil {
		return err
	}
	a.mu.Lock()
	if a.postgres == nil {
		a.postgres = map[string]bool{}
	}
	a.postgres[env] = hasPostgres
	a.mu.Unlock()
	if err := a.pushImages(ctx, m); err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: workflow %s not submitted to the reporter yet", environment.ErrPrepareAgain, strings.Join(pending, ", "))
	}
	return nil
}

// pushImages pushes the image of each app of m at its version, once per
// process.
func (a *argoCDPlane) pushImages(ctx context.Context, m *manifest.Manifest) error {
	if a.push == nil {
		return nil
	}
	var errs []error
	for _, app := range m.AppNames() {
		entry := m.Apps[app]
		if app == "postgres" || entry.Images.Code.Image == "postgres" || strings.HasSuffix(entry.Images.Code.Image, "/postgres") {
			continue // a service: its chart's own image
		}
		k := app + ":" + entry.Version()
		a.mu.Lock()
		done := a.pushed[k]
		a.mu.Unlock()
		if done {
			continue
		}
		if err := a.push(ctx, m.EnvName, app, entry.Version()); err != nil {
			errs = append(errs, fmt.Errorf("pushing the image of %s %s: %w", app, entry.Version(), err))
			continue
		}
		a.mu.Lock()
		if a.pushed == nil {
			a.pushed = map[string]bool{}
		}
		a.pushed[k] = true
		a.mu.Unlock()
	}
	return errors.Join(errs...)
}

// namespace makes env's namespace as the environment chart does, or
// checks that the one there is Runway's.
func (a *argoCDPlane) namespace(ctx context.Context, env string) (string, error) {
	obj, err := argocd.NamespaceObject(a.prefix, env)
	if err != nil {
		return "", err
	}
	name := argocd.Namespace(a.prefix, env)
	want := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: stringMap(obj["metadata"].(argocd.Object)["labels"])}}
	got, err := a.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = a.kube.CoreV1().Namespaces().Create(ctx, want, metav1.CreateOptions{FieldManager: kubernetes.ManagedBy})
		switch {
		case err == nil:
			a.log.Info("namespace created for Argo CD's sync", "env", env, "namespace", name)
			return name, nil
		case !apierrors.IsAlreadyExists(err):
			return "", fmt.Errorf("creating namespace %s: %w", name, err)
		}
		// Someone made it meanwhile: it is checked like one found.
		got, err = a.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
	switch {
	case err != nil:
		return "", fmt.Errorf("reading namespace %s: %w", name, err)
	case got.Labels[kubernetes.LabelManagedBy] != kubernetes.ManagedBy || got.Labels[kubernetes.LabelEnv] != env:
		return "", fmt.Errorf("namespace %s exists and is not Runway's for %s (labels %v): Runway writes no Secret into it", name, env, got.Labels)
	case got.DeletionTimestamp != nil:
		return "", fmt.Errorf("%w: namespace %s is being deleted", environment.ErrPrepareAgain, name)
	}
	return name, nil
}

// writeSecret sets the data of Secret name in ns to what edit makes of
// the data there (nil: none), creating it with Runway's labels.
func (a *argoCDPlane) writeSecret(ctx context.Context, ns, name, env string, edit func(old map[string][]byte) (map[string][]byte, error)) error {
	secrets := a.kube.CoreV1().Secrets(ns)
	for attempt := 0; ; attempt++ {
		cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			data, err := edit(nil)
			if err != nil {
				return err
			}
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
					Labels: map[string]string{kubernetes.LabelManagedBy: kubernetes.ManagedBy, kubernetes.LabelEnv: env}},
				Type: corev1.SecretTypeOpaque, Data: data,
			}
			_, err = secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: kubernetes.ManagedBy})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			if err != nil {
				return fmt.Errorf("creating Secret %s/%s: %w", ns, name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading Secret %s/%s: %w", ns, name, err)
		}
		if cur.Labels[kubernetes.LabelManagedBy] != kubernetes.ManagedBy || cur.Labels[kubernetes.LabelEnv] != env {
			return fmt.Errorf("the Secret %s/%s exists and is not Runway's", ns, name)
		}
		data, err := edit(cur.Data)
		if err != nil {
			return err
		}
		if maps.EqualFunc(data, cur.Data, func(x, y []byte) bool { return string(x) == string(y) }) {
			return nil
		}
		cur.Data, cur.StringData = data, nil
		_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{FieldManager: kubernetes.ManagedBy})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("updating Secret %s/%s: %w", ns, name, err)
		}
		return nil
	}
}

// database is app's database in env on the environment's PostgreSQL
// server that the export's postgres chart runs, as the app's pods get it;
// ok false when env's manifest has no postgres service.
func (a *argoCDPlane) database(ctx context.Context, env, app string) (runtime.Database, bool, error) {
	a.mu.Lock()
	has := a.postgres[env]
	a.mu.Unlock()
	if !has {
		return nil, false, nil
	}
	ns := argocd.Namespace(a.prefix, env)
	s, err := a.kube.CoreV1().Secrets(ns).Get(ctx, argocd.DatabaseSecret, metav1.GetOptions{})
	if err != nil {
		return nil, true, fmt.Errorf("reading the database passwords of %s: %w", env, err)
	}
	pw := string(s.Data[app])
	if pw == "" {
		return nil, true, fmt.Errorf("the database Secret of %s has no password for %s: %w", env, app, runtime.ErrUnsatisfiable)
	}
	return syncedDatabase{app: app, password: pw}, true, nil
}

// syncedDatabase is an app's database on the export's PostgreSQL server
// of its environment: the variables the export's pods get.
type syncedDatabase struct{ app, password string }

func (d syncedDatabase) Env() []string {
	return []string{
		"PGHOST=postgres", "PGPORT=5432", "PGUSER=" + d.app, "PGDATABASE=" + d.app, "PGPASSWORD=" + d.password, "PGSSLMODE=disable",
		fmt.Sprintf("DATABASE_URL=postgres://%s:%s@postgres:5432/%s?sslmode=disable", d.app, d.password, d.app),
	}
}

// syncedRuntime is the Kubernetes runtime whose jobs reach the databases
// of the environments Argo CD syncs.
type syncedRuntime struct {
	*kubernetes.Runtime
	plane *argoCDPlane
}

func (r syncedRuntime) Database(ctx context.Context, env, app string) (runtime.Database, error) {
	db, ok, err := r.plane.database(ctx, env, app)
	if !ok {
		return r.Runtime.Database(ctx, env, app)
	}
	return db, err
}

// password is a fresh database password.
func password() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a database password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func stringMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(argocd.Object); ok {
		for k, x := range m {
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}
