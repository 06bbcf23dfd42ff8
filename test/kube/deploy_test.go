// Package kube_test checks deploy/, the manifests that run runway serve in
// a cluster: every file parses strictly into its Kubernetes type and the
// pieces agree with each other (ports, names, mounts, the config), and,
// on a real API server (test/cluster), every object is accepted with
// strict field validation and the RBAC and admission policy give Runway's
// ServiceAccount what the Kubernetes runtime and the Argo Rollouts driver
// use, in the environments' namespaces only.
package kube_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/server"
)

// deployDir is deploy/ seen from this package's directory.
const deployDir = "../../deploy"

// Names deploy/ and docs/kubernetes.md share.
const (
	systemNamespace = "runway-system"
	serviceAccount  = "runway"
	environmentRole = "runway-environment"
	configKey       = "runway.yaml"
	managedByLabel  = "app.kubernetes.io/managed-by"
)

// object is one document of a deploy/ file.
type object struct {
	file string
	u    *unstructured.Unstructured
	raw  []byte // the document as JSON
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.u.GetKind(), o.u.GetNamespace(), o.u.GetName(), o.file)
}

// kustomization is the part of kustomization.yaml deploy/ uses.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// loadDeploy reads deploy/ as kubectl apply -k does: the resources of its
// kustomization.yaml (which must be every YAML file but itself), in order,
// with the images transformer applied.
func loadDeploy(t testing.TB) (kustomization, []object) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "kustomization.yaml"))
	if err != nil {
		t.Fatalf("reading the kustomization: %v", err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("parsing deploy/kustomization.yaml (a key this test does not apply?): %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("deploy/kustomization.yaml is %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			onDisk = append(onDisk, b)
		}
	}
	listed := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(listed, onDisk) {
		t.Fatalf("kustomization resources %v, YAML files in deploy/ %v: every file must be listed once", listed, onDisk)
	}
	var objs []object
	for _, f := range k.Resources {
		objs = append(objs, decodeFile(t, f)...)
	}
	for _, o := range objs {
		if err := applyImages(o.u, k); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
	}
	return k, objs
}

func decodeFile(t testing.TB, name string) []object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []object
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", name, err)
		}
		if m == nil {
			continue // an empty document
		}
		u := &unstructured.Unstructured{Object: m}
		raw, err := u.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs = append(objs, object{file: name, u: u, raw: raw})
	}
	if len(objs) == 0 {
		t.Fatalf("%s holds no object", name)
	}
	return objs
}

// applyImages does what kustomize's images transformer does to the pod
// templates deploy/ has (Deployments only).
func applyImages(u *unstructured.Unstructured, k kustomization) error {
	if u.GetKind() != "Deployment" {
		return nil
	}
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return err
	}
	for i, c := range containers {
		cm := c.(map[string]any)
		img, _ := cm["image"].(string)
		for _, im := range k.Images {
			name, tag, _ := strings.Cut(img, ":")
			if name != im.Name {
				continue
			}
			if im.NewName != "" {
				name = im.NewName
			}
			if im.NewTag != "" {
				tag = im.NewTag
			}
			cm["image"] = name + ":" + tag
		}
		containers[i] = cm
	}
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// typed decodes o strictly into its Go type: an unknown or misspelt field
// is an error, as it is for the API server's strict field validation.
func typed[T any](t testing.TB, o object) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(o.raw, v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	return v
}

// find returns the one object of kind and name.
func find(t testing.TB, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.u.GetKind() == kind && o.u.GetName() == name {
			return o
		}
	}
	t.Fatalf("deploy/ has no %s %s", kind, name)
	return object{}
}

// TestDeployFiles checks deploy/ without a cluster.
func TestDeployFiles(t *testing.T) {
	_, objs := loadDeploy(t)

	t.Run("every object strictly typed and namespaced in runway-system", func(t *testing.T) {
		for _, o := range objs {
			switch o.u.GetKind() {
			case "Namespace":
				typed[corev1.Namespace](t, o)
			case "ServiceAccount":
				typed[corev1.ServiceAccount](t, o)
			case "ConfigMap":
				typed[corev1.ConfigMap](t, o)
			case "PersistentVolumeClaim":
				typed[corev1.PersistentVolumeClaim](t, o)
			case "Service":
				typed[corev1.Service](t, o)
			case "Deployment":
				typed[appsv1.Deployment](t, o)
			case "ClusterRole":
				typed[rbacv1.ClusterRole](t, o)
			case "ClusterRoleBinding":
				typed[rbacv1.ClusterRoleBinding](t, o)
			case "NetworkPolicy":
				typed[networkingv1.NetworkPolicy](t, o)
			case "ValidatingAdmissionPolicy":
				typed[admissionv1.ValidatingAdmissionPolicy](t, o)
			case "ValidatingAdmissionPolicyBinding":
				typed[admissionv1.ValidatingAdmissionPolicyBinding](t, o)
			default:
				t.Errorf("%s: a kind this test does not know; add it here", o)
			}
			clusterScoped := slices.Contains([]string{"Namespace", "ClusterRole", "ClusterRoleBinding",
				"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}, o.u.GetKind())
			if ns := o.u.GetNamespace(); clusterScoped != (ns == "") || !clusterScoped && ns != systemNamespace {
				t.Errorf("%s: namespace %q; want %s for namespaced objects, none for cluster-scoped ones", o, ns, systemNamespace)
			}
			if o.u.GetLabels()[managedByLabel] != "" {
				t.Errorf("%s carries %s: that label marks what Runway itself creates, and lets Runway delete and bind in a namespace", o, managedByLabel)
			}
		}
	})

	t.Run("no wildcard in RBAC", func(t *testing.T) {
		for _, o := range objs {
			if o.u.GetKind() != "ClusterRole" {
				continue
			}
			for _, r := range typed[rbacv1.ClusterRole](t, o).Rules {
				for _, s := range slices.Concat(r.Verbs, r.Resources, r.APIGroups, r.ResourceNames) {
					if strings.Contains(s, "*") {
						t.Errorf("%s: wildcard %q in rule %+v", o, s, r)
					}
				}
				if len(r.NonResourceURLs) > 0 {
					t.Errorf("%s: non-resource URLs %v", o, r.NonResourceURLs)
				}
				if slices.Contains(r.Verbs, "escalate") || slices.Contains(r.Verbs, "impersonate") {
					t.Errorf("%s: %v", o, r.Verbs)
				}
			}
		}
		crb := typed[rbacv1.ClusterRoleBinding](t, find(t, objs, "ClusterRoleBinding", "runway"))
		if crb.RoleRef.Name == environmentRole {
			t.Errorf("%s is bound cluster-wide: it must be bound per namespace only", environmentRole)
		}
		for _, o := range objs {
			if o.u.GetKind() == "ClusterRoleBinding" || o.u.GetKind() == "RoleBinding" {
				if b := typed[rbacv1.ClusterRoleBinding](t, o); b.RoleRef.Name == environmentRole {
					t.Errorf("%s binds %s: only the runtime does, in the environments' namespaces", o, environmentRole)
				}
			}
		}
	})

	ns := typed[corev1.Namespace](t, find(t, objs, "Namespace", systemNamespace))
	if ns.Labels[managedByLabel] != "" {
		t.Errorf("namespace %s is labelled %s", systemNamespace, managedByLabel)
	}

	dep := typed[appsv1.Deployment](t, find(t, objs, "Deployment", "runway"))
	svc := typed[corev1.Service](t, find(t, objs, "Service", "runway"))
	cm := typed[corev1.ConfigMap](t, find(t, objs, "ConfigMap", "runway-config"))
	t.Run("deployment", func(t *testing.T) { checkDeployment(t, dep, objs) })
	t.Run("service selects the pods and serves the API port", func(t *testing.T) {
		checkService(t, svc, dep)
	})
	t.Run("config", func(t *testing.T) { checkConfig(t, cm, dep, svc) })
	t.Run("network policy", func(t *testing.T) { checkNetworkPolicies(t, objs, dep) })
	t.Run("admission policies name the ServiceAccount", func(t *testing.T) {
		for _, name := range []string{"runway-environments", "runway-environment-bindings"} {
			p := typed[admissionv1.ValidatingAdmissionPolicy](t, find(t, objs, "ValidatingAdmissionPolicy", name))
			want := fmt.Sprintf("system:serviceaccount:%s:%s", systemNamespace, dep.Spec.Template.Spec.ServiceAccountName)
			if len(p.Spec.MatchConditions) != 1 || !strings.Contains(p.Spec.MatchConditions[0].Expression, `"`+want+`"`) {
				t.Errorf("policy %s: match conditions %+v do not name %s", name, p.Spec.MatchConditions, want)
			}
			b := typed[admissionv1.ValidatingAdmissionPolicyBinding](t, find(t, objs, "ValidatingAdmissionPolicyBinding", name))
			if b.Spec.PolicyName != p.Name || !slices.Equal(b.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
				t.Errorf("binding %+v: want policy %s, actions [Deny]", b.Spec, p.Name)
			}
		}
	})
	t.Run("docs name every secret", func(t *testing.T) { checkSecretsDocumented(t, dep) })
	t.Run("kubectl kustomize renders the same objects", func(t *testing.T) { checkKustomize(t, objs) })
}

func checkDeployment(t *testing.T, dep *appsv1.Deployment, objs []object) {
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: Runway keeps its state in one data dir", dep.Spec.Replicas)
	}
	if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q, want Recreate: two pods must never share the data dir", dep.Spec.Strategy.Type)
	}
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != serviceAccount {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, serviceAccount)
	}
	find(t, objs, "ServiceAccount", pod.ServiceAccountName)
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s request %s, limit %s: want both, request <= limit", r, req.String(), lim.String())
		}
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v: want GET /healthz on port http", name, p)
			continue
		}
		// The API refuses (421) a Host header that is not loopback,
		// localhost or one of api.hosts; the kubelet would send the pod IP.
		if !slices.ContainsFunc(p.HTTPGet.HTTPHeaders, func(h corev1.HTTPHeader) bool { return h.Name == "Host" && h.Value == "localhost" }) {
			t.Errorf("%s probe sends no Host: localhost; Runway answers 421 to a pod IP", name)
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" }) {
		t.Errorf("no container port named http: %+v", c.Ports)
	}
	// Every writable path is a volume: the root file system is read-only.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m, ok := mounts["/var/lib/runway"]; !ok || m.ReadOnly {
		t.Errorf("no writable mount at /var/lib/runway: %+v", c.VolumeMounts)
	} else if v := volume(pod, m.Name); v == nil || v.PersistentVolumeClaim == nil {
		t.Errorf("/var/lib/runway is not a PersistentVolumeClaim: %+v", v)
	} else {
		find(t, objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName)
	}
	if m, ok := mounts["/tmp"]; !ok || m.ReadOnly || volume(pod, m.Name) == nil || volume(pod, m.Name).EmptyDir == nil {
		t.Errorf("no writable emptyDir at /tmp: %+v", c.VolumeMounts)
	}
	if m, ok := mounts["/etc/runway"]; !ok || !m.ReadOnly || volume(pod, m.Name) == nil || volume(pod, m.Name).ConfigMap == nil {
		t.Errorf("no read-only ConfigMap at /etc/runway: %+v", c.VolumeMounts)
	} else {
		find(t, objs, "ConfigMap", volume(pod, m.Name).ConfigMap.Name)
	}
	if !slices.Equal(c.Args, []string{"serve", "-c", "/etc/runway/" + configKey}) {
		t.Errorf("args %v, want serve -c /etc/runway/%s", c.Args, configKey)
	}
	// Secrets reach Runway only by reference.
	for _, e := range c.Env {
		if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "TOKEN") {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("env %s is not a secretKeyRef", e.Name)
			}
		}
	}
}

func volume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func checkService(t *testing.T, svc *corev1.Service, dep *appsv1.Deployment) {
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("service selector %s=%s does not select the pod template's labels %v", k, v, dep.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("service has no selector")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service ports %+v: want one, targeting the container port http", svc.Spec.Ports)
	}
}

func checkConfig(t *testing.T, cm *corev1.ConfigMap, dep *appsv1.Deployment, svc *corev1.Service) {
	text, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("configmap has no %s", configKey)
	}
	path := filepath.Join(t.TempDir(), configKey)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// The server's own loader: unknown keys are errors.
	cfg, err := server.LoadConfig(path)
	if err != nil {
		t.Fatalf("runway serve would refuse the ConfigMap's config: %v", err)
	}
	if cfg.Runtime != server.RuntimeKubernetes {
		t.Errorf("runtime %q, want %s", cfg.Runtime, server.RuntimeKubernetes)
	}
	if cfg.WebhookSecret != "" || cfg.API.AdminToken != "" || cfg.API.ReadToken != "" {
		t.Error("the ConfigMap holds a secret: webhook secret and tokens come from Secrets")
	}
	k := cfg.Kubernetes
	if k.Kubeconfig != "" {
		t.Errorf("kubernetes.kubeconfig %q: in the cluster, the in-cluster config (empty)", k.Kubeconfig)
	}
	for key, v := range map[string]string{"registry": k.Registry, "prometheusAddress": k.PrometheusAddress, "reporterURL": k.ReporterURL, "namespacePrefix": k.NamespacePrefix, "postgresAdminURLFile": k.PostgresAdminURLFile} {
		if v == "" {
			t.Errorf("kubernetes.%s is empty", key)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	mountedAt := func(p string) (corev1.VolumeMount, bool) {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(p, m.MountPath+"/") {
				return m, true
			}
		}
		return corev1.VolumeMount{}, false
	}
	for key, p := range map[string]string{"dataDir": cfg.DataDir, "workDir": cfg.WorkDir} {
		if m, ok := mountedAt(p); !ok || m.ReadOnly || m.MountPath != "/var/lib/runway" {
			t.Errorf("%s %s is not on the data volume", key, p)
		}
	}
	// The PostgreSQL admin URL is a file of the projected secrets volume.
	if m, ok := mountedAt(k.PostgresAdminURLFile); !ok {
		t.Errorf("postgresAdminURLFile %s is under no mount", k.PostgresAdminURLFile)
	} else {
		rel := strings.TrimPrefix(k.PostgresAdminURLFile, m.MountPath+"/")
		v := volume(dep.Spec.Template.Spec, m.Name)
		found := false
		if v != nil && v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret == nil {
					continue
				}
				for _, it := range s.Secret.Items {
					found = found || it.Path == rel && (s.Secret.Optional == nil || !*s.Secret.Optional)
				}
			}
		}
		if !found {
			t.Errorf("no required secret projects %s into %s", rel, m.MountPath)
		}
	}
	// The listener is the container's and the Service's port, on every
	// address of the pod.
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		t.Fatalf("listen %q: %v", cfg.Listen, err)
	}
	if host != "0.0.0.0" && host != "" {
		t.Errorf("listen host %q: the Service reaches the pod on its IP", host)
	}
	if fmt.Sprint(c.Ports[0].ContainerPort) != port || fmt.Sprint(svc.Spec.Ports[0].Port) != port {
		t.Errorf("listen port %s, container port %d, service port %d: want one port", port, c.Ports[0].ContainerPort, svc.Spec.Ports[0].Port)
	}
	// The jobs call the reporter on the Service; the API must answer to
	// that Host.
	u, err := url.Parse(k.ReporterURL)
	if err != nil {
		t.Fatal(err)
	}
	wantHost := fmt.Sprintf("%s.%s.svc", svc.Name, svc.Namespace)
	if u.Hostname() != wantHost || u.Port() != port {
		t.Errorf("reporterURL %s: want the Service, %s:%s", k.ReporterURL, wantHost, port)
	}
	for _, h := range []string{wantHost, wantHost + ".cluster.local", svc.Name + "." + svc.Namespace} {
		if !slices.Contains(cfg.API.Hosts, h) {
			t.Errorf("api.hosts %v lacks %s: the API would answer 421", cfg.API.Hosts, h)
		}
	}
	if !slices.Contains(cfg.Analysis.PrometheusAddresses, k.PrometheusAddress) {
		t.Errorf("analysis.prometheusAddresses %v lacks kubernetes.prometheusAddress %s", cfg.Analysis.PrometheusAddresses, k.PrometheusAddress)
	}
}

func checkNetworkPolicies(t *testing.T, objs []object, dep *appsv1.Deployment) {
	var deny, runway *networkingv1.NetworkPolicy
	for _, o := range objs {
		if o.u.GetKind() != "NetworkPolicy" {
			continue
		}
		np := typed[networkingv1.NetworkPolicy](t, o)
		if len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 {
			deny = np
		} else {
			runway = np
		}
	}
	if deny == nil || len(deny.Spec.Ingress) > 0 || len(deny.Spec.Egress) > 0 ||
		!slices.Equal(deny.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Fatalf("no default-deny policy (every pod, Ingress and Egress, no rule): %+v", deny)
	}
	if runway == nil {
		t.Fatal("no policy for Runway's pod")
	}
	for k, v := range runway.Spec.PodSelector.MatchLabels {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("policy selects %s=%s, not Runway's pod", k, v)
		}
	}
	var reporter, ingress bool
	for _, r := range runway.Spec.Ingress {
		if len(r.Ports) != 1 || r.Ports[0].Port == nil || r.Ports[0].Port.String() != "http" {
			t.Errorf("ingress rule %+v admits more than the API port", r)
		}
		if len(r.From) == 0 {
			t.Errorf("ingress rule %+v admits any source", r)
		}
		for _, p := range r.From {
			if p.IPBlock != nil {
				t.Errorf("ingress rule admits an ipBlock %+v", p.IPBlock)
			}
			if p.NamespaceSelector == nil {
				t.Errorf("ingress peer %+v selects pods of runway-system itself, which runs nothing else", p)
				continue
			}
			switch {
			case p.NamespaceSelector.MatchLabels[managedByLabel] == "runway" && p.PodSelector != nil && p.PodSelector.MatchLabels[managedByLabel] == "runway":
				reporter = true
			case p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "":
				ingress = true
			default:
				t.Errorf("ingress peer %+v is neither the environments' pods nor the ingress namespace", p)
			}
		}
	}
	if !reporter || !ingress {
		t.Errorf("ingress rules %+v: want the environments' pods (reporter %v) and the ingress namespace (%v)", runway.Spec.Ingress, reporter, ingress)
	}
}

// checkSecretsDocumented: every Secret the Deployment references is named
// in docs/kubernetes.md, which says how to create it.
func checkSecretsDocumented(t *testing.T, dep *appsv1.Deployment) {
	doc, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatalf("reading the docs: %v", err)
	}
	names := map[string]bool{}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			names[e.ValueFrom.SecretKeyRef.Name] = true
		}
	}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			names[v.Secret.SecretName] = true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					names[s.Secret.Name] = true
				}
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("the Deployment references no Secret")
	}
	for n := range names {
		if !bytes.Contains(doc, []byte("create secret generic "+n)) && !bytes.Contains(doc, []byte("create secret docker-registry "+n)) {
			t.Errorf("docs/kubernetes.md does not show how to create Secret %s (kubectl create secret ... %s)", n, n)
		}
	}
}

// checkKustomize compares the objects with kubectl's own rendering of
// deploy/, when kubectl is installed.
func checkKustomize(t *testing.T, objs []object) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the kustomization is checked by this test's own reading only")
	}
	out, err := exec.Command(kubectl, "kustomize", deployDir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/: %v", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var got []string
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName())
		if u.GetKind() == "Deployment" {
			want := find(t, objs, "Deployment", u.GetName())
			a, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			b, _, _ := unstructured.NestedSlice(want.u.Object, "spec", "template", "spec", "containers")
			if fmt.Sprint(a[0].(map[string]any)["image"]) != fmt.Sprint(b[0].(map[string]any)["image"]) {
				t.Errorf("image %v rendered by kubectl, %v by this test", a[0].(map[string]any)["image"], b[0].(map[string]any)["image"])
			}
		}
	}
	var want []string
	for _, o := range objs {
		want = append(want, o.u.GetKind()+"/"+o.u.GetNamespace()+"/"+o.u.GetName())
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("kubectl kustomize renders %v, this test reads %v", got, want)
	}
}
