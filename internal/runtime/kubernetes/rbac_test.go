package kubernetes

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The unit tests of the RoleBinding and of CollectStrays run on
// client-go's fake clientset: no cluster, no authorizer (refusals are
// injected).

var testAccount = ServiceAccount{Namespace: "runway-system", Name: "runway"}

// fakeRuntime is a runtime on cs, its informers stopped when t ends.
func fakeRuntime(t *testing.T, cs *fake.Clientset, o Options) *Runtime {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := newRuntime(ctx, cs, o, DefaultNamespacePrefix, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("newRuntime: %v", err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// actions are cs's actions of verb on resource (in ns, unless ns is "*").
func actions(cs *fake.Clientset, verb, resource, ns string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range cs.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && (ns == "*" || a.GetNamespace() == ns) {
			out = append(out, a)
		}
	}
	return out
}

// forbidden is the API server's refusal of a request of Runway's.
func forbidden(resource, name string) error {
	return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, name,
		errorString(`User "system:serviceaccount:runway-system:runway" cannot do that`))
}

type errorString string

func (e errorString) Error() string { return string(e) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBindingMadeOnceInEachNamespace(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset()
	r := fakeRuntime(t, cs, Options{ServiceAccount: testAccount})
	for _, env := range []string{"env-a", "env-a", "env-b", "env-a"} {
		if err := r.ensureNamespace(ctx, env, nil); err != nil {
			t.Fatalf("ensureNamespace(%s): %v", env, err)
		}
	}
	if err := r.ensureNamespace(ctx, "env-a", map[string]string{AnnotationPostgres: "true"}); err != nil {
		t.Fatalf("ensureNamespace(env-a) with an annotation: %v", err)
	}
	// Every call after the first in a namespace does no RBAC request.
	if n := len(actions(cs, "get", "rolebindings", "*")); n != 0 {
		t.Errorf("%d Gets of RoleBindings, want none (each made once, by this runtime)", n)
	}
	for _, env := range []string{"env-a", "env-b"} {
		ns := r.Namespace(env)
		if n := len(actions(cs, "create", "rolebindings", ns)); n != 1 {
			t.Errorf("%d RoleBinding creations in %s, want 1", n, ns)
		}
		rb, err := cs.RbacV1().RoleBindings(ns).Get(ctx, RoleBindingName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the RoleBinding of %s: %v", ns, err)
		}
		want := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "runway-environment"}
		if rb.RoleRef != want {
			t.Errorf("RoleBinding %s/%s refers to %+v, want %+v", ns, rb.Name, rb.RoleRef, want)
		}
		wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "runway", Namespace: "runway-system"}}
		if !slices.Equal(rb.Subjects, wantSubjects) {
			t.Errorf("RoleBinding %s/%s binds %+v, want %+v", ns, rb.Name, rb.Subjects, wantSubjects)
		}
		if rb.Labels[LabelManagedBy] != ManagedBy || rb.Labels[LabelEnv] != env {
			t.Errorf("RoleBinding %s/%s is labelled %v", ns, rb.Name, rb.Labels)
		}
	}

	// A restarted runtime finds them there and makes no other.
	again := fakeRuntime(t, cs, Options{ServiceAccount: testAccount})
	if err := again.ensureNamespace(ctx, "env-a", nil); err != nil {
		t.Fatalf("ensureNamespace after a restart: %v", err)
	}
	if n := len(actions(cs, "create", "rolebindings", r.Namespace("env-a"))); n != 2 {
		t.Errorf("%d RoleBinding creations in env-a after a restart, want 2 (the second refused as existing)", n)
	}
	list, err := cs.RbacV1().RoleBindings(r.Namespace("env-a")).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("RoleBindings in env-a after a restart: %d, %v; want 1", len(list.Items), err)
	}
}

func TestBindingOfTheRoleConfigured(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset()
	r := fakeRuntime(t, cs, Options{ServiceAccount: testAccount, EnvironmentRole: "ci-environment"})
	if err := r.ensureNamespace(ctx, "env-a", nil); err != nil {
		t.Fatal(err)
	}
	rb, err := cs.RbacV1().RoleBindings(r.Namespace("env-a")).Get(ctx, RoleBindingName, metav1.GetOptions{})
	if err != nil || rb.RoleRef.Name != "ci-environment" {
		t.Fatalf("RoleBinding = %+v, %v; want one of ClusterRole ci-environment", rb, err)
	}
}

func TestNoBindingWithoutServiceAccount(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset()
	r := fakeRuntime(t, cs, Options{})
	if err := r.ensureNamespace(ctx, "env-a", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.liveNamespace(ctx, "env-a"); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "rolebindings" {
			t.Errorf("a RoleBinding request without a ServiceAccount: %s", a.GetVerb())
		}
	}
}

func TestHalfAServiceAccountRefused(t *testing.T) {
	for _, sa := range []ServiceAccount{{Name: "runway"}, {Namespace: "runway-system"}} {
		_, err := newRuntime(t.Context(), fake.NewClientset(), Options{ServiceAccount: sa}, DefaultNamespacePrefix, slog.Default())
		if err == nil {
			t.Errorf("newRuntime with ServiceAccount %+v: no error", sa)
		}
	}
}

// refuseProbes makes the first n probes of the binding in ns Forbidden
// (n < 0: all), and counts them.
func refuseProbes(cs *fake.Clientset, ns string, n int) (count func() int) {
	var mu sync.Mutex
	calls := 0
	cs.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, kruntime.Object, error) {
		g := a.(k8stesting.GetAction)
		if g.GetNamespace() != ns || g.GetName() != bindingProbe {
			return false, nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if n < 0 || calls <= n {
			return true, nil, forbidden("secrets", g.GetName())
		}
		return false, nil, nil
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
}

func TestBindingForbiddenRetried(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset()
	r := fakeRuntime(t, cs, Options{ServiceAccount: testAccount})
	probes := refuseProbes(cs, r.Namespace("env-a"), 3)
	// Concurrent calls: none returns before the binding is in effect.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = r.ensureNamespace(ctx, "env-a", nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("ensureNamespace %d: %v", i, err)
		}
	}
	if got := probes(); got != 4 {
		t.Errorf("%d probes of the binding, want 4 (3 refused, then allowed)", got)
	}
	// Known bound: no more probes, no more RBAC requests.
	if err := r.ensureNamespace(ctx, "env-a", nil); err != nil {
		t.Fatal(err)
	}
	if got := probes(); got != 4 {
		t.Errorf("%d probes after the binding was in effect, want still 4", got)
	}
}

func TestBindingNeverInEffect(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset()
	r := fakeRuntime(t, cs, Options{ServiceAccount: testAccount})
	r.binder.grace = 100 * time.Millisecond
	refuseProbes(cs, r.Namespace("env-a"), -1)
	err := r.ensureNamespace(ctx, "env-a", nil)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "still refused") {
		t.Fatalf("ensureNamespace with a binding never in effect = %v, want a Forbidden saying so", err)
	}
	// Not remembered as bound: the next call checks again (and finds it
	// made, old enough not to wait for).
	before := len(actions(cs, "create", "rolebindings", "*"))
	if err := r.ensureNamespace(ctx, "env-a", nil); err != nil {
		t.Errorf("ensureNamespace again: %v", err)
	}
	if n := len(actions(cs, "create", "rolebindings", "*")); n != before+1 {
		t.Errorf("RoleBinding creations: %d then %d, want one more", before, n)
	}
}

func TestBindingOfAnotherRoleRefused(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	cs := fake.NewClientset(&rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: RoleBindingName, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "runway", Namespace: "runway-system"}},
	})
	r := fakeRuntime(t, cs, Options{ServiceAccount: testAccount})
	err := r.ensureNamespace(ctx, "env-a", nil)
	if err == nil || !strings.Contains(err.Error(), "refusing to use it") {
		t.Fatalf("ensureNamespace with a RoleBinding %s of ClusterRole view there = %v, want refused", RoleBindingName, err)
	}
}

func TestCollectStraysListsSecretsPerNamespace(t *testing.T) {
	ctx := testCtx(t)
	old := metav1.NewTime(time.Now().Add(-time.Hour))
	nsA, nsB := DefaultNamespacePrefix+"env-a", DefaultNamespacePrefix+"env-b"
	namespace := func(name, env string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env}}}
	}
	vars := func(ns, env, name string) *corev1.Secret {
		s := newSecret(ns, name, map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelKind: KindVars}, nil)
		s.CreationTimestamp = old
		return s
	}
	cs := fake.NewClientset(
		namespace(nsA, "env-a"), namespace(nsB, "env-b"),
		// Another's namespace labelled as env-a's, and one unlabelled.
		namespace("stranger-env-a", "env-a"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
		vars(nsA, "env-a", "web-v1"), // stray: no Deployment, no Job
		vars(nsB, "env-b", "web-v2"), // its Deployment runs
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web-v2", Namespace: nsB, Labels: workloadLabels("env-b", "web", "v2")}},
		vars("stranger-env-a", "env-a", "web-v1"),
		vars("kube-system", "env-a", "web-v1"),
	)
	// As deploy/rbac.yaml has it: no Secrets in all namespaces.
	cs.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, kruntime.Object, error) {
		if a.GetNamespace() == "" {
			return true, nil, forbidden("secrets", "")
		}
		return false, nil, nil
	})
	r := fakeRuntime(t, cs, Options{ServiceAccount: testAccount})
	removed, err := r.CollectStrays(ctx)
	if err != nil {
		t.Fatalf("CollectStrays: %v", err)
	}
	if want := []string{"env-a/secret/web-v1"}; !slices.Equal(removed, want) {
		t.Errorf("CollectStrays removed %q, want %q", removed, want)
	}
	var listedIn []string
	for _, a := range actions(cs, "list", "secrets", "*") {
		listedIn = append(listedIn, a.GetNamespace())
	}
	if want := []string{nsA, nsB}; !slices.Equal(listedIn, want) {
		t.Errorf("Secrets listed in %q, want in %q only", listedIn, want)
	}
	for _, ns := range []string{"stranger-env-a", "kube-system"} {
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx, "web-v1", metav1.GetOptions{}); err != nil {
			t.Errorf("the Secret in %s: %v, want it left alone", ns, err)
		}
	}
	if _, err := cs.CoreV1().Secrets(nsB).Get(ctx, "web-v2", metav1.GetOptions{}); err != nil {
		t.Errorf("the Secret of a running Deployment: %v, want it kept", err)
	}
	// Namespaces made before the runtime bound itself get bound too.
	for _, ns := range []string{nsA, nsB} {
		if _, err := cs.RbacV1().RoleBindings(ns).Get(ctx, RoleBindingName, metav1.GetOptions{}); err != nil {
			t.Errorf("the RoleBinding of %s: %v", ns, err)
		}
	}
	for _, a := range actions(cs, "create", "rolebindings", "*") {
		if ns := a.GetNamespace(); ns != nsA && ns != nsB {
			t.Errorf("a RoleBinding made in %s", ns)
		}
	}
}
