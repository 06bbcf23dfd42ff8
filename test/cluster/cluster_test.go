package cluster_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/test/cluster"
)

func TestMain(m *testing.M) {
	os.Exit(cluster.RunMain(m, cluster.Options{Rollouts: true}))
}

// wait bounds every wait on a controller.
const wait = 2 * time.Minute

func clients(t *testing.T, c *cluster.Cluster) (*kubernetes.Clientset, *dynamic.DynamicClient) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

// namespace creates a namespace of the test's own.
func namespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// eventually polls cond until it returns true, failing t after wait.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{
				Name: "app", Image: "example.invalid/app:1", Command: []string{"./app"},
			}},
		},
	}
}

// TestWorkloadsGetPods checks the workload controllers of the
// kube-controller-manager: each workload gets its pods, which stay
// Pending (unbound: binding them is the node agent's job).
func TestWorkloadsGetPods(t *testing.T) {
	c := cluster.Shared(t)
	cs, _ := clients(t, c)
	labels := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	tests := []struct {
		name      string
		create    func(ctx context.Context, ns string) error
		pods      int
		ownerKind string // the kind owning the pods
	}{
		{
			name: "deployment",
			create: func(ctx context.Context, ns string) error {
				_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
					ObjectMeta: metav1.ObjectMeta{Name: "web"},
					Spec: appsv1.DeploymentSpec{
						Replicas: ptr.To[int32](2), Selector: labels("web"), Template: podTemplate("web"),
					},
				}, metav1.CreateOptions{})
				return err
			},
			pods: 2, ownerKind: "ReplicaSet",
		},
		{
			name: "statefulset",
			create: func(ctx context.Context, ns string) error {
				_, err := cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
					ObjectMeta: metav1.ObjectMeta{Name: "db"},
					Spec: appsv1.StatefulSetSpec{
						Replicas: ptr.To[int32](1), Selector: labels("db"), Template: podTemplate("db"),
					},
				}, metav1.CreateOptions{})
				return err
			},
			pods: 1, ownerKind: "StatefulSet",
		},
		{
			name: "job",
			create: func(ctx context.Context, ns string) error {
				tmpl := podTemplate("migrate")
				tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
				_, err := cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
					ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
					Spec:       batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: tmpl},
				}, metav1.CreateOptions{})
				return err
			},
			pods: 1, ownerKind: "Job",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := namespace(t, cs)
			if err := tt.create(t.Context(), ns); err != nil {
				t.Fatalf("creating the %s: %v", tt.name, err)
			}
			var pods []corev1.Pod
			eventually(t, fmt.Sprintf("%d pods", tt.pods), func(ctx context.Context) (bool, error) {
				list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				pods = list.Items
				return len(pods) == tt.pods, nil
			})
			for _, p := range pods {
				if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
					t.Errorf("pod %s: phase %q on node %q, want Pending and unbound", p.Name, p.Status.Phase, p.Spec.NodeName)
				}
				if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != tt.ownerKind {
					t.Errorf("pod %s: owners %v, want one %s", p.Name, p.OwnerReferences, tt.ownerKind)
				}
				if p.Spec.ServiceAccountName != "default" {
					t.Errorf("pod %s: service account %q, want default", p.Name, p.Spec.ServiceAccountName)
				}
			}
		})
	}
}

// TestNamespaceDeletionCompletes checks the namespace controller: a
// namespace with workloads in it is deleted to nothing.
func TestNamespaceDeletionCompletes(t *testing.T) {
	c := cluster.Shared(t)
	cs, _ := clients(t, c)
	ns := namespace(t, cs)
	ctx := t.Context()
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "config"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate("web"),
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deployment's pod", func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 1, err
	})
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting namespace %s: %v", ns, err)
	}
	eventually(t, "the namespace to be gone", func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

var rolloutsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// TestRolloutGetsReplicaSet checks that the real Argo Rollouts controller
// runs: a canary Rollout gets its ReplicaSet and a status.
func TestRolloutGetsReplicaSet(t *testing.T) {
	c := cluster.Shared(t)
	cs, dyn := clients(t, c)
	ns := namespace(t, cs)
	rollout := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": "web"},
		"spec": map[string]any{
			"replicas": int64(2),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "app", "image": "example.invalid/app:1", "command": []any{"./app"},
				}}},
			},
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{
				map[string]any{"setWeight": int64(50)},
				map[string]any{"pause": map[string]any{}},
			}}},
		},
	}}
	if _, err := dyn.Resource(rolloutsGVR).Namespace(ns).Create(t.Context(), rollout, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the rollout: %v", err)
	}
	eventually(t, "a ReplicaSet owned by the Rollout", func(ctx context.Context) (bool, error) {
		list, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, rs := range list.Items {
			for _, o := range rs.OwnerReferences {
				if o.Kind == "Rollout" && o.Name == "web" {
					return true, nil
				}
			}
		}
		return false, nil
	})
	eventually(t, "pods of the Rollout", func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		return err == nil && len(list.Items) == 2, err
	})
	eventually(t, "the Rollout's status", func(ctx context.Context) (bool, error) {
		r, err := dyn.Resource(rolloutsGVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase, _, _ := unstructured.NestedString(r.Object, "status", "phase")
		return phase != "", nil
	})
}

// TestStartWithCRDs starts a control plane of the test's own with Argo
// CD's CRDs installed, and creates an Application.
func TestStartWithCRDs(t *testing.T) {
	c := cluster.Start(t, cluster.Options{CRDs: []string{cluster.ArgoCDCRDs(t)}})
	cs, dyn := clients(t, c)
	ns := namespace(t, cs)
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata":   map[string]any{"name": "homelabping"},
		"spec": map[string]any{
			"project": "default",
			"source": map[string]any{
				"repoURL": "https://git.example.invalid/state.git", "path": "apps/production", "targetRevision": "main",
			},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "production"},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	if _, err := dyn.Resource(gvr).Namespace(ns).Create(t.Context(), app, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating an Application: %v", err)
	}
	bad := app.DeepCopy()
	bad.SetName("bad")
	if err := unstructured.SetNestedField(bad.Object, int64(3), "spec", "project"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(gvr).Namespace(ns).Create(t.Context(), bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("creating an Application with a number as project: got %v, want Invalid (schema checked)", err)
	}
	if _, err := os.Stat(c.Kubeconfig); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
}
