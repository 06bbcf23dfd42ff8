package server

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/runway-cd/runway/internal/argocd"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/redact"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
	"github.com/runway-cd/runway/test/cluster"
)

// TestArgoCDPlanePrepares runs the preparation of runtime argocd against
// a real API server (no Argo CD: what it would sync is not this test's):
// the namespace as the environment chart makes it, the reporter Secret
// with exactly the tokens of the workflows the manifest names, database
// passwords made once and kept, and nothing written into a namespace
// that is not Runway's.
func TestArgoCDPlanePrepares(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx := t.Context()
	kube, err := k8s.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rep := reporter.New(db, nil)
	red := redact.New()
	var pushed []string // the image pushes (the image build itself is internal/image's, tested on a real registry there)
	plane := &argoCDPlane{kube: kube, prefix: "rwtest-", tokens: rep, secrets: red, log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		push: func(_ context.Context, env, app, version string) error {
			pushed = append(pushed, env+" "+app+":"+version)
			return nil
		}}

	m := &manifest.Manifest{EnvName: "pr-7", DeployingWorkflowName: "wf-7", Apps: map[string]*manifest.App{
		"web":      {Images: manifest.Images{Code: manifest.Image{Image: "registry.test/web", Tag: "v7"}}},
		"postgres": {Images: manifest.Images{Code: manifest.Image{Image: "postgres", Tag: "15"}}},
	}}
	// Before the pipeline submitted its workflow there is no token: the
	// Secrets are written without it and Prepare asks to be called again.
	err = plane.Prepare(ctx, m)
	if !errors.Is(err, environment.ErrPrepareAgain) {
		t.Fatalf("Prepare before the submit = %v, want ErrPrepareAgain", err)
	}
	ns, err := kube.CoreV1().Namespaces().Get(ctx, "rwtest-pr-7", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels[argocd.LabelManagedBy] != argocd.ManagedBy || ns.Labels[argocd.LabelEnv] != "pr-7" {
		t.Fatalf("namespace labels %v, want the environment chart's", ns.Labels)
	}
	if got := secretKeys(t, kube, "rwtest-pr-7", argocd.ReporterSecret); len(got) != 0 {
		t.Fatalf("reporter Secret keys %v before the submit, want none", got)
	}

	if err := rep.Submit(ctx, "wf-7", []string{"web", "postgres"}); err != nil {
		t.Fatal(err)
	}
	if err := plane.Prepare(ctx, m); err != nil {
		t.Fatal(err)
	}
	tok, err := rep.Token(ctx, "wf-7")
	if err != nil {
		t.Fatal(err)
	}
	s := secret(t, kube, "rwtest-pr-7", argocd.ReporterSecret)
	if string(s.Data["wf-7"]) != tok || len(s.Data) != 1 {
		t.Fatalf("reporter Secret = %v keys, want exactly wf-7's token", slices.Sorted(maps.Keys(s.Data)))
	}
	if red.String("x "+tok) == "x "+tok {
		t.Error("the token was not given to the redactor")
	}
	pw := secret(t, kube, "rwtest-pr-7", argocd.DatabaseSecret).Data
	if len(pw["postgres"]) == 0 || len(pw["web"]) == 0 {
		t.Fatalf("database Secret keys %v, want postgres and web", slices.Sorted(maps.Keys(pw)))
	}

	// A new version of web in the same environment, another workflow: the
	// reporter Secret follows, the passwords stay.
	m.Apps["web"].DeployingWorkflowName = "wf-8"
	if err := rep.Submit(ctx, "wf-8", []string{"web"}); err != nil {
		t.Fatal(err)
	}
	if err := plane.Prepare(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := secretKeys(t, kube, "rwtest-pr-7", argocd.ReporterSecret); !slices.Equal(got, []string{"wf-7", "wf-8"}) {
		t.Fatalf("reporter Secret keys %v, want wf-7 (postgres) and wf-8 (web)", got)
	}
	again := secret(t, kube, "rwtest-pr-7", argocd.DatabaseSecret).Data
	if string(again["web"]) != string(pw["web"]) || string(again["postgres"]) != string(pw["postgres"]) {
		t.Fatal("the database passwords changed on a second Prepare")
	}
	if !slices.Equal(pushed, []string{"pr-7 web:v7"}) {
		t.Fatalf("pushed %v, want web's image once and no service's", pushed)
	}
	dbase, ok, err := plane.database(ctx, "pr-7", "web")
	if err != nil || !ok {
		t.Fatalf("database = %v, %v", ok, err)
	}
	if env := strings.Join(dbase.Env(), " "); !strings.Contains(env, "PGPASSWORD="+string(pw["web"])) || !strings.Contains(env, "PGHOST=postgres") {
		t.Fatalf("database env %q, want the export's server and web's password", red.String(env))
	}

	// A namespace of the same name that is not Runway's gets nothing.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rwtest-theirs"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	theirs := &manifest.Manifest{EnvName: "theirs", DeployingWorkflowName: "wf-7", Apps: map[string]*manifest.App{"web": m.Apps["web"]}}
	if err := plane.Prepare(ctx, theirs); err == nil || !strings.Contains(err.Error(), "not Runway's") {
		t.Fatalf("Prepare in a foreign namespace = %v, want refused", err)
	}
	if list, err := kube.CoreV1().Secrets("rwtest-theirs").List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("Secrets in the foreign namespace: %d (%v), want none", len(list.Items), err)
	}
}

func secret(t *testing.T, kube k8s.Interface, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func secretKeys(t *testing.T, kube k8s.Interface, ns, name string) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(secret(t, kube, ns, name).Data))
}

// A namespace someone else makes between Runway's read and its create is
// checked like one found: no Secret goes into it. (client-go's fake
// clientset, to make the race happen on cue; the rest of Prepare runs on
// a real API server above.)
func TestArgoCDPlaneLosesTheNamespaceRace(t *testing.T) {
	kube := fake.NewClientset()
	kube.PrependReactor("create", "namespaces", func(action k8stesting.Action) (bool, kruntime.Object, error) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "runway-pr-9"}} // theirs: no labels
		if err := kube.Tracker().Add(ns); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewAlreadyExists(corev1.Resource("namespaces"), ns.Name)
	})
	plane := &argoCDPlane{kube: kube, tokens: noTokens{}, secrets: redact.New(), log: slog.New(slog.NewTextHandler(t.Output(), nil))}
	m := &manifest.Manifest{EnvName: "pr-9", DeployingWorkflowName: "wf-9", Apps: map[string]*manifest.App{
		"web": {Images: manifest.Images{Code: manifest.Image{Image: "registry.test/web", Tag: "v9"}}},
	}}
	if err := plane.Prepare(t.Context(), m); err == nil || !strings.Contains(err.Error(), "not Runway's") {
		t.Fatalf("Prepare after losing the race = %v, want refused", err)
	}
	if list, err := kube.CoreV1().Secrets("runway-pr-9").List(t.Context(), metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("Secrets in their namespace: %d (%v), want none", len(list.Items), err)
	}
}

type noTokens struct{}

func (noTokens) Token(context.Context, string) (string, error) { return "", reporter.ErrNotFound }
