package argocd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/test/cluster"
)

// TestExportAppliesToAPIServer applies the whole export, as Argo CD would
// sync it for the example's production and staging environments (every
// Application, the ApplicationSet, the namespaces, workloads, Services,
// AnalysisTemplates, hook Jobs, and the Secrets a server in argocd mode
// writes), to a real API server with Argo CD's and Argo Rollouts' CRDs,
// by server-side apply with strict field validation: a field no schema
// knows is refused, so every object is what the schemas accept.
func TestExportAppliesToAPIServer(t *testing.T) {
	c := cluster.Start(t, cluster.Options{CRDs: []string{cluster.ArgoCDCRDs(t), cluster.ArgoRolloutsCRDs(t)}})
	applyExport(t, c.Config)
	if t.Failed() {
		return
	}
	// What Argo CD does last when a staging manifest goes (the
	// Application's finalizer deletes its resources, the namespace among
	// them): the namespace and everything in it, the Rollouts' CRD objects
	// included, are gone; nothing is left behind.
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := Namespace("", stagingEnv)
	if err := cs.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting namespace %s: %v", ns, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		ns, _ := cs.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
		t.Fatalf("namespace %s still there after its deletion: %v (status %+v)", ns.Name, err, ns.Status)
	}
}

// applyExport applies the example's export to the API server of cfg.
func applyExport(t *testing.T, cfg *rest.Config) {
	o, state := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	argocdNS := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": DefaultArgoCDNamespace}}
	objs = append(objs, argocdNS)
	for _, f := range files {
		if f.Path != "applicationset.yaml" && f.Path != "application-production.yaml" {
			continue
		}
		var obj map[string]any
		if err := yaml.UnmarshalStrict(f.Data, &obj); err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		objs = append(objs, obj)
	}
	for env, rendered := range renderedEnvironments(t, o, files, state) {
		objs = append(objs, rendered...)
		workflow := productionWorkflow
		if env != manifest.ProductionEnv {
			workflow = stagingWorkflow
		}
		objs = append(objs,
			ReporterSecretObject("", env, map[string]string{workflow: strings.Repeat("ab", 32)}),
			DatabaseSecretObject("", env, map[string]string{postgresName: "pw-admin", "homelabping": "pw-app"}))
		ns, err := NamespaceObject("", env)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, ns) // the same namespace as the chart's: applied again, it merges
	}

	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	// Namespaces first, as Argo CD's sync wave -1 has them.
	for _, pass := range []bool{true, false} {
		for _, obj := range objs {
			if (obj["kind"] == "Namespace") != pass {
				continue
			}
			apply(t, dyn, mapper, obj)
		}
	}
	kinds := map[string]int{}
	for _, obj := range objs {
		kinds[obj["kind"].(string)]++
	}
	for _, k := range []string{"ApplicationSet", "Application", "Namespace", "Deployment", "Rollout", "Service", "AnalysisTemplate", "StatefulSet", "Job", "Secret"} {
		if kinds[k] == 0 {
			t.Errorf("no %s applied", k)
		}
	}
	t.Logf("applied %v", kinds)

	// The control: a field no schema has is refused, for a CRD's object too.
	for _, obj := range objs {
		if obj["kind"] != "Rollout" {
			continue
		}
		bad := (&unstructured.Unstructured{Object: obj}).DeepCopy().Object
		bad["spec"].(map[string]any)["canaryWeight"] = int64(5)
		if err := tryApply(t, dyn, mapper, bad); err == nil || !strings.Contains(err.Error(), "canaryWeight") {
			t.Errorf("applying a Rollout with an unknown field: %v, want it refused", err)
		}
	}
}

// apply server-side applies obj, refusing unknown fields.
func apply(t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, obj map[string]any) {
	t.Helper()
	if err := tryApply(t, dyn, mapper, obj); err != nil {
		t.Error(err)
	}
}

func tryApply(t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, obj map[string]any) error {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	force := true
	_, err = ri.Patch(t.Context(), u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager: "runway-export-test", Force: &force, FieldValidation: "Strict",
	})
	if err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}
