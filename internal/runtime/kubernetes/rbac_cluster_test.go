package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/runway-cd/runway/internal/runtime"
)

// deployAccount is the ServiceAccount deploy/rbac.yaml and
// deploy/admission.yaml grant to.
var deployAccount = ServiceAccount{Namespace: "runway-system", Name: "runway"}

// TestRunsWithDeployRBAC applies deploy/rbac.yaml and deploy/admission.yaml
// to the shared cluster and runs the runtime as Runway's ServiceAccount
// (impersonated): Start, Versions, RunJob, CollectStrays, Stop and
// Destroy work with deploy/'s least privilege, the runtime binding
// ClusterRole runway-environment in each namespace it makes.
func TestRunsWithDeployRBAC(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	applyDeploy(t, ctx, h.cluster.Config, "rbac.yaml", "admission.yaml")

	cfg := rest.CopyConfig(h.cluster.Config)
	user := "system:serviceaccount:" + deployAccount.Namespace + ":" + deployAccount.Name
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{
		"system:serviceaccounts", "system:serviceaccounts:" + deployAccount.Namespace, "system:authenticated",
	}}
	prefix := fmt.Sprintf("rwrbac%d-", time.Now().UnixNano()%1e6)
	awaitPolicy(t, ctx, cfg, h.cs, prefix)

	// The identity is in force: Runway may not list Secrets cluster-wide,
	// and a runtime that binds nothing is refused in its own namespace.
	runway, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runway.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets in all namespaces as %s: %v, want Forbidden", user, err)
	}
	unbound, err := New(ctx, Options{Config: cfg, Images: h.images, NamespacePrefix: prefix + "u"})
	if err != nil {
		t.Fatalf("New as %s, binding nothing: %v", user, err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = unbound.Close(cctx)
		_ = h.cs.CoreV1().Namespaces().Delete(cctx, unbound.Namespace("env-a"), metav1.DeleteOptions{})
	})
	err = unbound.EnsureVars(ctx, runtime.ReplicaSet{Env: "env-a", App: "web", Version: "v1"})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("EnsureVars as %s without the RoleBinding: %v, want Forbidden", user, err)
	}

	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := New(ctx, Options{Config: cfg, Images: h.images, NamespacePrefix: prefix, ServiceAccount: deployAccount, Logger: logger})
	if err != nil {
		t.Fatalf("New as %s: %v", user, err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, env := range rt.Envs() {
			if err := rt.Destroy(cctx, env); err != nil {
				t.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		_ = rt.Close(cctx)
		// What a failed Destroy left, as the admin.
		list, _ := h.cs.CoreV1().Namespaces().List(cctx, metav1.ListOptions{})
		if list != nil {
			for _, ns := range list.Items {
				if strings.HasPrefix(ns.Name, prefix) {
					_ = h.cs.CoreV1().Namespaces().Delete(cctx, ns.Name, metav1.DeleteOptions{})
				}
			}
		}
	})

	// Nothing there yet: nothing runs, nothing to stop (and no refusal
	// for asking in a namespace that does not exist).
	if got, err := rt.Versions("env-a", "web"); err != nil || len(got) != 0 {
		t.Fatalf("Versions before anything = %v, %v", got, err)
	}
	if err := rt.Stop(ctx, "env-a", "web", "v1"); err != nil {
		t.Fatalf("Stop before anything: %v", err)
	}

	rs := runtime.ReplicaSet{
		Env: "env-a", App: "web", Version: "v1", Dir: h.program.Dir,
		Command: append(slices.Clone(h.program.Command), "serve"), PortEnv: "PORT", HealthPath: "/healthz",
		Replicas: 1, Vars: []string{"GREETING=hello"},
	}
	replicas, err := rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start as %s: %v", user, err)
	}
	if len(replicas) != 1 {
		t.Errorf("Start = %+v, want 1 replica", replicas)
	}
	if got, err := rt.Versions("env-a", "web"); err != nil || !slices.Equal(got, []string{"v1"}) {
		t.Errorf("Versions = %v, %v; want [v1]", got, err)
	}
	rb, err := h.cs.RbacV1().RoleBindings(rt.Namespace("env-a")).Get(ctx, RoleBindingName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the RoleBinding of env-a: %v", err)
	}
	if rb.RoleRef.Name != DefaultEnvironmentRole || len(rb.Subjects) != 1 || rb.Subjects[0].Name != deployAccount.Name {
		t.Errorf("the RoleBinding of env-a: %+v %+v", rb.RoleRef, rb.Subjects)
	}

	// A job in an environment RunJob makes: its variables reach it, its
	// log reaches the caller (pods/log).
	var log bytes.Buffer
	job := runtime.Job{
		Env: "env-b", App: "web", Name: "migrations", Dir: h.program.Dir,
		Command: append(slices.Clone(h.program.Command), "job"), Vars: []string{"MIGRATION=42"}, Log: &log,
	}
	if err := rt.RunJob(ctx, job); err != nil {
		t.Fatalf("RunJob as %s: %v\nlog:\n%s", user, err, log.String())
	}
	if !strings.Contains(log.String(), "ENV MIGRATION=42") {
		t.Errorf("the job's log lacks its variable:\n%s", log.String())
	}
	if got, err := rt.CollectStrays(ctx); err != nil || len(got) != 0 {
		t.Errorf("CollectStrays as %s = %q, %v; want nothing, no error", user, got, err)
	}

	if err := rt.Stop(ctx, "env-a", "web", "v1"); err != nil {
		t.Errorf("Stop as %s: %v", user, err)
	}
	for _, env := range []string{"env-a", "env-b"} {
		if err := rt.Destroy(ctx, env); err != nil {
			t.Errorf("Destroy(%s) as %s: %v", env, user, err)
		}
	}
	if got := rt.Envs(); len(got) != 0 {
		t.Errorf("Envs after Destroy = %v", got)
	}
}

// applyDeploy server-side applies the objects of deploy/'s files named;
// they are deleted when t ends.
func applyDeploy(t *testing.T, ctx context.Context, cfg *rest.Config, files ...string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	force := true
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("decoding deploy/%s: %v", f, err)
			}
			if m == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			gvk := u.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("deploy/%s: %s: %v", f, gvk, err)
			}
			raw, err := u.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			ri := dyn.Resource(mapping.Resource) // rbac.yaml and admission.yaml are cluster-scoped
			if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, raw, metav1.PatchOptions{
				FieldManager: "runway-runtime-test", FieldValidation: metav1.FieldValidationStrict, Force: &force,
			}); err != nil {
				t.Fatalf("applying %s %s of deploy/%s: %v", gvk.Kind, u.GetName(), f, err)
			}
			name := u.GetName()
			t.Cleanup(func() {
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := ri.Delete(cctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("deleting %s %s: %v", gvk.Kind, name, err)
				}
			})
		}
	}
}

// awaitPolicy waits until the API server enforces admission.yaml's
// policy on the impersonated ServiceAccount (it picks policies up
// asynchronously): an unlabelled namespace is refused. One made before
// is deleted again by admin.
func awaitPolicy(t *testing.T, ctx context.Context, cfg *rest.Config, admin kubernetes.Interface, prefix string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("%sprobe-%d", prefix, i)
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "runway-environments") {
			return
		}
		if err != nil {
			t.Fatalf("creating an unlabelled namespace as Runway: %v, want refused by policy runway-environments", err)
		}
		_ = admin.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		select {
		case <-ctx.Done():
			t.Fatalf("the admission policy was not enforced: %v", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
