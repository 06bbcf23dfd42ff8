package kubernetes

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/runtime"
)

// containerName is the one container of every pod the runtime makes.
const containerName = "app"

// Probe defaults, as runtime.Probe documents them.
const (
	defaultPeriod    = time.Second
	defaultTimeout   = time.Second
	defaultThreshold = 3
)

// unprivileged is the uid and gid replicas and jobs run as: app code is
// untrusted (distroless' "nonroot").
const unprivileged = 65532

// podTemplate is the pod template of rs's replicas running image ref: a
// pure function of its arguments, so the same rs gives the same template
// (Start compares templates by hash). rs.Vars are not in it; the
// container takes them from the Secret SecretName(rs).
func podTemplate(rs runtime.ReplicaSet, ref string) corev1.PodTemplateSpec {
	portEnv := rs.PortEnv
	if portEnv == "" {
		portEnv = "PORT"
	}
	readinessPath := rs.Readiness.Path
	if readinessPath == "" {
		readinessPath = rs.HealthPath
	}
	if readinessPath == "" {
		readinessPath = "/"
	}
	c := corev1.Container{
		Name:       containerName,
		Image:      ref,
		WorkingDir: image.AppDir,
		Command:    slices.Clone(rs.Command),
		Ports:      []corev1.ContainerPort{{Name: "http", ContainerPort: ContainerPort, Protocol: corev1.ProtocolTCP}},
		Env: append(podEnv(rs.Env, rs.App),
			corev1.EnvVar{Name: "RUNWAY_VERSION", Value: rs.Version},
			corev1.EnvVar{Name: portEnv, Value: strconv.Itoa(ContainerPort)}),
		EnvFrom:                  []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: SecretName(rs)}}}},
		ReadinessProbe:           httpProbe(rs.Readiness, readinessPath),
		ImagePullPolicy:          corev1.PullIfNotPresent,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		SecurityContext:          containerSecurity(),
	}
	if rs.Liveness != nil {
		path := rs.Liveness.Path
		if path == "" {
			path = rs.HealthPath
		}
		c.LivenessProbe = httpProbe(*rs.Liveness, path)
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: workloadLabels(rs.Env, rs.App, rs.Version)},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{c},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			DNSPolicy:                     corev1.DNSClusterFirst,
			SchedulerName:                 corev1.DefaultSchedulerName,
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			SecurityContext:               podSecurity(),
		},
	}
}

// podEnv is what every container gets besides its Secret: its pod's IP,
// HOST to bind (the pod IP: $(POD_IP) is expanded by the kubelet), and
// the environment and app it runs for. Nothing here is secret.
func podEnv(env, app string) []corev1.EnvVar {
	vars := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
		{Name: "HOST", Value: "$(POD_IP)"},
		{Name: "RUNWAY_ENV", Value: env},
	}
	if app != "" {
		vars = append(vars, corev1.EnvVar{Name: "RUNWAY_APP", Value: app})
	}
	return vars
}

// httpProbe is p as a Kubernetes probe of path on the "http" port.
// Kubernetes counts periods and timeouts in whole seconds, at least 1:
// shorter ones are rounded up.
func httpProbe(p runtime.Probe, path string) *corev1.Probe {
	period, timeout, threshold := p.Period, p.Timeout, p.FailureThreshold
	if period <= 0 {
		period = defaultPeriod
	}
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	if threshold <= 0 {
		threshold = defaultThreshold
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    seconds(period),
		TimeoutSeconds:   seconds(timeout),
		FailureThreshold: int32(threshold),
		SuccessThreshold: 1,
	}
}

// seconds is d in whole seconds, rounded up, at least 1.
func seconds(d time.Duration) int32 {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		return 1
	}
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(s)
}

// podSecurity runs every pod unprivileged: not root, the runtime's
// default seccomp profile.
func podSecurity() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](unprivileged),
		RunAsGroup:     ptr.To[int64](unprivileged),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// containerSecurity drops every capability and privilege escalation.
func containerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// workloadLabels are the labels of a version's Deployment, pods, Secret.
func workloadLabels(env, app, version string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelApp: app, LabelVersion: version}
}

// SecretName is the Secret holding rs.Vars, which rs's pods take as
// their environment (envFrom): named like the Deployment.
func SecretName(rs runtime.ReplicaSet) string { return workloadName(rs.App, rs.Version) }

// templateHash identifies a pod template: Start leaves a Deployment whose
// template has the same hash as it is.
func templateHash(t corev1.PodTemplateSpec) string {
	b, err := json.Marshal(t)
	if err != nil {
		// A PodTemplateSpec always marshals; be distinct, never equal.
		return "unmarshalable"
	}
	return hashHex(string(b))[:16]
}
