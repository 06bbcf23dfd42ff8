package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/runtime"
)

// countingImages is a hand-written Images that names each build by its
// name and dir, counting builds.
type countingImages struct {
	mu     sync.Mutex
	builds int
}

func (c *countingImages) Build(ctx context.Context, name, tag, dir string, entrypoint []string) (string, error) {
	c.mu.Lock()
	c.builds++
	c.mu.Unlock()
	return "registry.test/" + name + "@sha256:" + hashHex(dir), nil
}

func testReplicaSet() runtime.ReplicaSet {
	return runtime.ReplicaSet{
		Env: "env-a", App: "web", Version: "v1",
		Dir:        "/artifacts/web/v1",
		Command:    []string{"./testapp", "-host", "$(POD_IP)", "serve"},
		PortEnv:    "PORT",
		HealthPath: "/healthz",
		Readiness:  runtime.Probe{Period: 50 * time.Millisecond},
		Liveness:   &runtime.Probe{Path: "/livez", Period: 2500 * time.Millisecond, Timeout: 300 * time.Millisecond, FailureThreshold: 2},
		Replicas:   2,
		Vars:       []string{"GREETING=hello", "DATABASE_URL=postgres://web:s3cret-password@db:5432/web", "TOKEN=tok-123456"},
	}
}

func TestPodTemplateIsDeterministic(t *testing.T) {
	imgs := &countingImages{}
	r := &Runtime{prefix: DefaultNamespacePrefix, images: imgs}
	r.builds.images = imgs
	ctx := context.Background()
	rs := testReplicaSet()
	first, err := r.PodTemplate(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.PodTemplate(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(first, again) || templateHash(first) != templateHash(again) {
		t.Errorf("two PodTemplates of one replica set differ:\n%+v\n%+v", first, again)
	}
	// A fresh runtime (a restarted control plane) makes the same.
	fresh := &Runtime{prefix: DefaultNamespacePrefix, images: &countingImages{}}
	fresh.builds.images = fresh.images
	other, err := fresh.PodTemplate(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if templateHash(other) != templateHash(first) {
		t.Error("a fresh runtime makes another template of the same replica set")
	}
	// Another version of the same artifact reuses its image.
	v2 := rs
	v2.Version = "v2"
	if _, err := r.PodTemplate(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if imgs.builds != 1 {
		t.Errorf("%d image builds of one artifact dir, want 1", imgs.builds)
	}
	// The variables are not in the template: changing them changes
	// nothing (they are in the Secret).
	vars := rs
	vars.Vars = []string{"OTHER=1"}
	if t2, _ := r.PodTemplate(ctx, vars); templateHash(t2) != templateHash(first) {
		t.Error("the template depends on the variables, which belong in the Secret")
	}
	changed := rs
	changed.Command = []string{"./testapp", "serve", "-never-ready"}
	if t2, _ := r.PodTemplate(ctx, changed); templateHash(t2) == templateHash(first) {
		t.Error("another command gives the same template hash")
	}
}

func TestPodTemplateKeepsSecretsOutOfTheSpec(t *testing.T) {
	rs := testReplicaSet()
	tmpl := podTemplate(rs, "registry.test/web@sha256:abc")
	b, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret-password", "tok-123456", "hello", "DATABASE_URL", "TOKEN"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the pod template holds %q:\n%s", secret, b)
		}
	}
	c := tmpl.Spec.Containers[0]
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != SecretName(rs) {
		t.Errorf("EnvFrom = %+v, want the Secret %s", c.EnvFrom, SecretName(rs))
	}
	if d := varsData(rs.Vars); string(d["DATABASE_URL"]) != "postgres://web:s3cret-password@db:5432/web" || string(d["GREETING"]) != "hello" {
		t.Errorf("the Secret's data = %q", d)
	}
}

func TestPodTemplate(t *testing.T) {
	rs := testReplicaSet()
	tmpl := podTemplate(rs, "registry.test/web@sha256:abc")
	c := tmpl.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	tests := []struct {
		name string
		ok   bool
		got  any
	}{
		{"image", c.Image == "registry.test/web@sha256:abc", c.Image},
		{"working dir", c.WorkingDir == image.AppDir, c.WorkingDir},
		{"command", strings.Join(c.Command, " ") == "./testapp -host $(POD_IP) serve", c.Command},
		{"POD_IP from the pod's status", env["POD_IP"].ValueFrom != nil && env["POD_IP"].ValueFrom.FieldRef.FieldPath == "status.podIP", env["POD_IP"]},
		{"HOST is the pod IP", env["HOST"].Value == "$(POD_IP)", env["HOST"]},
		{"the port variable", env["PORT"].Value == fmt.Sprint(ContainerPort), env["PORT"]},
		{"RUNWAY_ENV", env["RUNWAY_ENV"].Value == "env-a", env["RUNWAY_ENV"]},
		{"RUNWAY_APP", env["RUNWAY_APP"].Value == "web", env["RUNWAY_APP"]},
		{"RUNWAY_VERSION", env["RUNWAY_VERSION"].Value == "v1", env["RUNWAY_VERSION"]},
		{"POD_IP before HOST (a $(VAR) names an earlier variable)", c.Env[0].Name == "POD_IP", c.Env},
		{"port named http", len(c.Ports) == 1 && c.Ports[0].Name == "http" && c.Ports[0].ContainerPort == ContainerPort, c.Ports},
		{"readiness on HealthPath, periods rounded up to 1s", c.ReadinessProbe.HTTPGet.Path == "/healthz" && c.ReadinessProbe.PeriodSeconds == 1 &&
			c.ReadinessProbe.TimeoutSeconds == 1 && c.ReadinessProbe.FailureThreshold == 3, c.ReadinessProbe},
		{"liveness as asked, 2.5s rounded up", c.LivenessProbe != nil && c.LivenessProbe.HTTPGet.Path == "/livez" && c.LivenessProbe.PeriodSeconds == 3 &&
			c.LivenessProbe.TimeoutSeconds == 1 && c.LivenessProbe.FailureThreshold == 2, c.LivenessProbe},
		{"labels", tmpl.Labels[LabelManagedBy] == ManagedBy && tmpl.Labels[LabelEnv] == "env-a" && tmpl.Labels[LabelApp] == "web" && tmpl.Labels[LabelVersion] == "v1", tmpl.Labels},
		{"no service links", tmpl.Spec.EnableServiceLinks != nil && !*tmpl.Spec.EnableServiceLinks, tmpl.Spec.EnableServiceLinks},
		{"no API token", tmpl.Spec.AutomountServiceAccountToken != nil && !*tmpl.Spec.AutomountServiceAccountToken, tmpl.Spec.AutomountServiceAccountToken},
		{"not root", tmpl.Spec.SecurityContext.RunAsNonRoot != nil && *tmpl.Spec.SecurityContext.RunAsNonRoot, tmpl.Spec.SecurityContext},
		{"no privilege escalation", c.SecurityContext.AllowPrivilegeEscalation != nil && !*c.SecurityContext.AllowPrivilegeEscalation, c.SecurityContext},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("%s: got %+v", tt.name, tt.got)
		}
	}

	noLiveness := rs
	noLiveness.Liveness = nil
	noLiveness.Readiness = runtime.Probe{Path: "/ready", Period: 3 * time.Second, FailureThreshold: 1}
	noLiveness.PortEnv = "HTTP_PORT"
	c = podTemplate(noLiveness, "x").Spec.Containers[0]
	if c.LivenessProbe != nil {
		t.Errorf("a replica set without liveness got %+v", c.LivenessProbe)
	}
	if p := c.ReadinessProbe; p.HTTPGet.Path != "/ready" || p.PeriodSeconds != 3 || p.FailureThreshold != 1 {
		t.Errorf("readiness = %+v, want /ready every 3s, threshold 1", p)
	}
	found := false
	for _, e := range c.Env {
		found = found || e.Name == "HTTP_PORT" && e.Value == fmt.Sprint(ContainerPort)
	}
	if !found {
		t.Errorf("no HTTP_PORT variable in %+v", c.Env)
	}
}

func TestSeconds(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want int32
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {90 * time.Second, 90}} {
		if got := seconds(tt.in); got != tt.want {
			t.Errorf("seconds(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestExitDescription(t *testing.T) {
	for _, tt := range []struct {
		in   corev1.ContainerStateTerminated
		want string
	}{
		{corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}, "exit status 3"},
		{corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}, "exit status 137 (OOMKilled)"},
		{corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", Message: "liveness probe failed: 503\nmore"}, "exit status 137: liveness probe failed: 503"},
		{corev1.ContainerStateTerminated{Signal: 9}, "signal: 9"},
	} {
		if got := exitDescription(&tt.in); got != tt.want {
			t.Errorf("exitDescription(%+v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSCRAMVerifier(t *testing.T) {
	v, err := scramVerifier("pencil")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") || strings.Count(v, "$") != 2 || strings.Contains(v, "pencil") {
		t.Errorf("verifier %q is not PostgreSQL's form, or holds the password", v)
	}
	if w, _ := scramVerifier("pencil"); w == v {
		t.Error("two verifiers of one password share their salt")
	}
}
