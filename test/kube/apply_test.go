package kube_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/runway-cd/runway/test/cluster"
)

// runwayUser is how the API server knows Runway's ServiceAccount.
var runwayUser = authorizationv1.SubjectAccessReviewSpec{
	User:   "system:serviceaccount:" + systemNamespace + ":" + serviceAccount,
	Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"},
}

// access is one request of Runway's: a verb on a resource (group,
// resource, subresource), in a namespace or cluster-wide ("").
type access struct {
	verb, group, resource, subresource, name string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.name != "" {
		r += " " + a.name
	}
	return a.verb + " " + r
}

func each(verbs []string, group string, resources ...string) []access {
	var out []access
	for _, r := range resources {
		res, sub, _ := strings.Cut(r, "/")
		for _, v := range verbs {
			out = append(out, access{verb: v, group: group, resource: res, subresource: sub})
		}
	}
	return out
}

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

// environmentAccess is what the Kubernetes runtime and the Argo Rollouts
// driver do inside an environment's namespace.
var environmentAccess = func() []access {
	var a []access
	a = append(a, each(writeVerbs, "apps", "deployments", "statefulsets")...)
	a = append(a, each(writeVerbs, "", "services", "secrets", "persistentvolumeclaims")...)
	a = append(a, each(readVerbs, "apps", "replicasets")...)
	a = append(a, each(readVerbs, "", "pods")...)
	a = append(a, access{verb: "get", resource: "pods", subresource: "log"})
	a = append(a, each(writeVerbs, "batch", "jobs")...)
	a = append(a, each(writeVerbs, "argoproj.io", "rollouts", "analysistemplates")...)
	a = append(a, access{verb: "deletecollection", group: "argoproj.io", resource: "analysistemplates"})
	a = append(a, access{verb: "patch", group: "argoproj.io", resource: "rollouts", subresource: "status"})
	a = append(a, each(readVerbs, "argoproj.io", "analysisruns")...)
	return a
}()

// clusterAccess is what Runway does cluster-wide: its environments'
// namespaces; list and watch of what its informers follow in every
// namespace (filtered by label, which RBAC cannot express); binding
// runway-environment.
var clusterAccess = slices.Concat(
	each([]string{"get", "list", "watch", "create", "patch", "delete"}, "", "namespaces"),
	each([]string{"list", "watch"}, "", "pods"),
	each([]string{"list", "watch"}, "apps", "deployments", "replicasets"),
	each([]string{"list"}, "batch", "jobs"),
	each([]string{"list", "watch"}, "argoproj.io", "rollouts", "analysisruns"),
	each([]string{"get", "create"}, "rbac.authorization.k8s.io", "rolebindings"),
	[]access{{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: environmentRole}},
)

// onlyInEnvironments is what of environmentAccess Runway may do in its
// environments' namespaces and nowhere else: everything but the
// cluster-wide list and watch, Secrets always.
var onlyInEnvironments = func() []access {
	var out []access
	for _, a := range environmentAccess {
		if !slices.Contains(clusterAccess, a) {
			out = append(out, a)
		}
	}
	return out
}()

// deniedEverywhere is never Runway's, in any namespace, its
// environments' included.
var deniedEverywhere = []access{
	{verb: "create", resource: "pods"},
	{verb: "create", resource: "pods", subresource: "exec"},
	{verb: "create", resource: "serviceaccounts", subresource: "token"},
	{verb: "get", resource: "configmaps"},
	{verb: "create", group: "rbac.authorization.k8s.io", resource: "roles"},
	{verb: "delete", group: "rbac.authorization.k8s.io", resource: "rolebindings"},
	{verb: "update", group: "rbac.authorization.k8s.io", resource: "rolebindings"},
	{verb: "create", group: "argoproj.io", resource: "analysisruns"},
	{verb: "deletecollection", resource: "secrets"},
}

// deniedClusterWide is never Runway's at cluster scope.
var deniedClusterWide = []access{
	{verb: "update", resource: "namespaces"},
	{verb: "get", resource: "secrets"},
	{verb: "watch", resource: "secrets"},
	{verb: "create", group: "apps", resource: "deployments"},
	{verb: "get", resource: "pods", subresource: "log"},
	{verb: "get", resource: "nodes"},
	{verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"},
	{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "cluster-admin"},
	{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "runway"},
	{verb: "escalate", group: "rbac.authorization.k8s.io", resource: "clusterroles"},
	{verb: "impersonate", resource: "users"},
	{verb: "impersonate", resource: "serviceaccounts"},
	{verb: "list", resource: "secrets"}, // all namespaces
	{verb: "create", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicybindings"},
}

// TestDeployAppliesAndLimitsRunway applies deploy/ to a real API server
// with strict field validation and checks, as Runway's ServiceAccount
// (SubjectAccessReviews, and requests made by impersonating it), that
// it can do what the runtime and the driver need in the namespaces it
// creates, and nothing of that elsewhere.
func TestDeployAppliesAndLimitsRunway(t *testing.T) {
	_, objs := loadDeploy(t)
	c := cluster.Start(t, cluster.Options{})
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(c.Config)

	applyAll(t, ctx, c.Config, objs)
	t.Run("applying again changes nothing", func(t *testing.T) {
		applyAll(t, ctx, c.Config, objs)
	})
	waitPolicyChecked(t, ctx, admin, "runway-environments")
	waitPolicyChecked(t, ctx, admin, "runway-environment-bindings")

	rcfg := rest.CopyConfig(c.Config)
	rcfg.Impersonate = rest.ImpersonationConfig{UserName: runwayUser.User, Groups: runwayUser.Groups}
	runway := kubernetes.NewForConfigOrDie(rcfg)

	// A namespace Runway did not create, and Runway's own.
	other := "team-a"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	waitPolicyEnforced(t, ctx, runway, admin)

	t.Run("cluster-wide", func(t *testing.T) {
		for _, a := range clusterAccess {
			expectSAR(t, ctx, admin, "", a, true)
		}
		for _, a := range deniedClusterWide {
			expectSAR(t, ctx, admin, "", a, false)
		}
		// For real, as Runway: what its informers list, in all namespaces,
		// by label; Secrets not.
		sel := metav1.ListOptions{LabelSelector: managedByLabel + "=runway"}
		lists := map[string]func() error{
			"pods":        func() error { _, err := runway.CoreV1().Pods("").List(ctx, sel); return err },
			"deployments": func() error { _, err := runway.AppsV1().Deployments("").List(ctx, sel); return err },
			"replicasets": func() error { _, err := runway.AppsV1().ReplicaSets("").List(ctx, sel); return err },
			"jobs":        func() error { _, err := runway.BatchV1().Jobs("").List(ctx, sel); return err },
			"namespaces":  func() error { _, err := runway.CoreV1().Namespaces().List(ctx, sel); return err },
		}
		for what, list := range lists {
			if err := list(); err != nil {
				t.Errorf("listing %s in all namespaces as Runway: %v", what, err)
			}
		}
		if _, err := runway.CoreV1().Secrets("").List(ctx, sel); !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets in all namespaces as Runway: %v, want Forbidden", err)
		}
	})

	env := "runway-v20261201120000"
	t.Run("create an environment's namespace and bind itself there", func(t *testing.T) {
		_, err := runway.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   env,
			Labels: map[string]string{managedByLabel: "runway", "runway.dev/env": "v20261201120000"},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating a labelled namespace as Runway: %v", err)
		}
		// Before the binding Runway holds nothing in it.
		expectSAR(t, ctx, admin, env, access{verb: "get", resource: "secrets"}, false)
		if _, err := runway.RbacV1().RoleBindings(env).Create(ctx, environmentBinding(env, serviceAccount, systemNamespace), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the environment's RoleBinding as Runway: %v", err)
		}
	})

	t.Run("in the environment's namespace", func(t *testing.T) {
		waitSAR(t, ctx, admin, env, access{verb: "get", resource: "secrets"})
		for _, a := range environmentAccess {
			expectSAR(t, ctx, admin, env, a, true)
		}
		for _, a := range deniedEverywhere {
			expectSAR(t, ctx, admin, env, a, false)
		}
		// And for real, as Runway: a Secret written and read back.
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: map[string]string{managedByLabel: "runway"}}, StringData: map[string]string{"DATABASE_URL": "postgres://x"}}
		if _, err := runway.CoreV1().Secrets(env).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating a Secret as Runway: %v", err)
		}
		if _, err := runway.CoreV1().Secrets(env).Get(ctx, "db", metav1.GetOptions{}); err != nil {
			t.Fatalf("reading it back as Runway: %v", err)
		}
		if _, err := runway.CoreV1().Pods(env).List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("listing pods as Runway: %v", err)
		}
		// The runtime annotates its namespaces.
		if _, err := runway.CoreV1().Namespaces().Patch(ctx, env, types.MergePatchType, []byte(`{"metadata":{"annotations":{"runway.dev/note":"x"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("annotating its environment's namespace as Runway: %v", err)
		}
	})

	t.Run("nowhere else", func(t *testing.T) {
		for _, ns := range []string{"kube-system", "default", systemNamespace, other} {
			for _, a := range onlyInEnvironments {
				expectSAR(t, ctx, admin, ns, a, false)
			}
			for _, a := range deniedEverywhere {
				expectSAR(t, ctx, admin, ns, a, false)
			}
		}
		if _, err := runway.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("listing kube-system's secrets as Runway: %v, want Forbidden", err)
		}
	})

	// What RBAC allows but the admission policy refuses, and what RBAC's
	// own escalation check refuses.
	refusals := []struct {
		name string
		do   func() error
		want string // in the error; empty: any Forbidden
	}{
		{name: "an unlabelled namespace", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			_, err := runway.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "runway-unlabelled"}}, metav1.CreateOptions{})
			return err
		}},
		{name: "a namespace labelled otherwise", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			_, err := runway.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "runway-helm", Labels: map[string]string{managedByLabel: "Helm"}}}, metav1.CreateOptions{})
			return err
		}},
		{name: "deleting a namespace it did not create", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			return runway.CoreV1().Namespaces().Delete(ctx, other, metav1.DeleteOptions{})
		}},
		{name: "deleting its own namespace", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			return runway.CoreV1().Namespaces().Delete(ctx, systemNamespace, metav1.DeleteOptions{})
		}},
		{name: "labelling a namespace as Runway's", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			_, err := runway.CoreV1().Namespaces().Patch(ctx, other, types.MergePatchType, []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"runway"}}}`), metav1.PatchOptions{})
			return err
		}},
		{name: "unlabelling its environment's namespace", want: "may not change the labels", do: func() error {
			_, err := runway.CoreV1().Namespaces().Patch(ctx, env, types.MergePatchType, []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`), metav1.PatchOptions{})
			return err
		}},
		{name: "moving its environment's namespace to another environment", want: "may not change the labels", do: func() error {
			_, err := runway.CoreV1().Namespaces().Patch(ctx, env, types.MergePatchType, []byte(`{"metadata":{"labels":{"runway.dev/env":"production"}}}`), metav1.PatchOptions{})
			return err
		}},
		{name: "binding itself in kube-system", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			_, err := runway.RbacV1().RoleBindings("kube-system").Create(ctx, environmentBinding("kube-system", serviceAccount, systemNamespace), metav1.CreateOptions{})
			return err
		}},
		{name: "binding itself in its own namespace", want: "labelled app.kubernetes.io/managed-by=runway", do: func() error {
			_, err := runway.RbacV1().RoleBindings(systemNamespace).Create(ctx, environmentBinding(systemNamespace, serviceAccount, systemNamespace), metav1.CreateOptions{})
			return err
		}},
		{name: "binding another subject", want: "only bind ClusterRole runway-environment, and only to itself", do: func() error {
			_, err := runway.RbacV1().RoleBindings(env).Create(ctx, environmentBinding(env, "default", "kube-system"), metav1.CreateOptions{})
			return err
		}},
		{name: "binding another role it holds", want: "only bind ClusterRole runway-environment, and only to itself", do: func() error {
			b := environmentBinding(env, serviceAccount, systemNamespace)
			b.Name, b.RoleRef.Name = "runway-cluster", "runway"
			_, err := runway.RbacV1().RoleBindings(env).Create(ctx, b, metav1.CreateOptions{})
			return err
		}},
		{name: "binding cluster-admin", want: "is attempting to grant RBAC permissions not currently held", do: func() error {
			b := environmentBinding(env, serviceAccount, systemNamespace)
			b.Name, b.RoleRef.Name = "runway-admin", "cluster-admin"
			_, err := runway.RbacV1().RoleBindings(env).Create(ctx, b, metav1.CreateOptions{})
			return err
		}},
	}
	for _, tt := range refusals {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			err := tt.do()
			if !apierrors.IsForbidden(err) {
				t.Fatalf("got %v, want Forbidden", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want it to say %q", err, tt.want)
			}
		})
	}

	t.Run("tear the environment down", func(t *testing.T) {
		if err := runway.CoreV1().Namespaces().Delete(ctx, env, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting its environment's namespace as Runway: %v", err)
		}
	})
}

// environmentBinding is the RoleBinding the runtime creates in each
// namespace it creates.
func environmentBinding(ns, saName, saNamespace string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "runway", Namespace: ns, Labels: map[string]string{managedByLabel: "runway"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: environmentRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNamespace}},
	}
}

// applyAll server-side applies every object with strict field
// validation: an unknown or duplicate field is an error, not a warning.
func applyAll(t *testing.T, ctx context.Context, cfg *rest.Config, objs []object) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kubernetes.NewForConfigOrDie(cfg).Discovery()))
	force := true
	for _, o := range objs {
		gvk := o.u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: the API server does not serve %s: %v", o, gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := o.u.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		_, err = ri.Patch(ctx, o.u.GetName(), types.ApplyPatchType, o.raw, metav1.PatchOptions{
			FieldManager: "runway-deploy-test", FieldValidation: metav1.FieldValidationStrict, Force: &force,
		})
		if err != nil {
			t.Fatalf("applying %s: %v", o, err)
		}
	}
}

// waitPolicyChecked fails on a type-checking warning of the admission
// policy (an expression that does not fit the types it matches), once
// kube-controller-manager's validatingadmissionpolicy-status-controller
// has written one. Without that controller the status stays empty; then
// the requests below are the check (with failurePolicy Fail, an
// expression that does not compile refuses them all with its error).
func waitPolicyChecked(t *testing.T, ctx context.Context, admin kubernetes.Interface, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.ObservedGeneration == p.Generation && p.Status.TypeChecking != nil {
			for _, w := range p.Status.TypeChecking.ExpressionWarnings {
				t.Errorf("policy %s: %s: %s", name, w.FieldRef, w.Warning)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Logf("policy %s has no type-checking status (no validatingadmissionpolicy-status-controller running): checked by its behaviour only", name)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitPolicyEnforced waits until the admission policy refuses Runway an
// unlabelled namespace: the API server picks policies up asynchronously.
// A namespace created meanwhile is deleted again.
func waitPolicyEnforced(t *testing.T, ctx context.Context, runway, admin kubernetes.Interface) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprintf("runway-policy-probe-%d", i)
		_, err := runway.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "runway-environments") {
			return
		}
		if err == nil {
			_ = admin.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		} else {
			t.Fatalf("creating an unlabelled namespace as Runway: %v, want refused by policy runway-environments", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the admission policy did not refuse an unlabelled namespace within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sar asks the API server whether Runway's ServiceAccount may do a in ns.
func sar(ctx context.Context, admin kubernetes.Interface, ns string, a access) (bool, string, error) {
	spec := runwayUser
	spec.ResourceAttributes = &authorizationv1.ResourceAttributes{
		Namespace: ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Name: a.name,
	}
	r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return false, "", err
	}
	return r.Status.Allowed, r.Status.Reason, nil
}

func expectSAR(t *testing.T, ctx context.Context, admin kubernetes.Interface, ns string, a access, want bool) {
	t.Helper()
	got, reason, err := sar(ctx, admin, ns, a)
	if err != nil {
		t.Fatalf("SubjectAccessReview %s in %q: %v", a, ns, err)
	}
	if got != want {
		where := "cluster-wide"
		if ns != "" {
			where = "in " + ns
		}
		t.Errorf("Runway may %s %s: %v, want %v (%s)", a, where, got, want, reason)
	}
}

// waitSAR waits until a is allowed in ns: a new RoleBinding reaches the
// authorizer through its informer.
func waitSAR(t *testing.T, ctx context.Context, admin kubernetes.Interface, ns string, a access) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, _, err := sar(ctx, admin, ns, a)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s not allowed within 30s of the RoleBinding", a, ns)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
