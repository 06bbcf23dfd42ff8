package nodeagent

import (
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
)

// sources reads what env and envFrom refer to from the API server.
type sources interface {
	secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	configMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
}

// configError is a container's configuration that cannot be resolved (a
// missing Secret, key or field); the kubelet's CreateContainerConfigError.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// environ is a container's resolved environment in definition order.
type environ struct {
	names  []string
	values map[string]string
}

func (e *environ) set(name, value string) {
	if e.values == nil {
		e.values = map[string]string{}
	}
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *environ) lookup(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

// list is the environment as NAME=value strings.
func (e *environ) list() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// envName is what the kubelet accepts as a variable name from envFrom
// (a C identifier, or since 1.34 any printable ASCII but '='; the
// conservative rule is kept).
var envName = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

// resolveEnv computes container c's environment as the kubelet does:
// envFrom sources in order (a later one wins), then env entries in
// order, each value with $(VAR) expanded against the variables defined
// before it; valueFrom values are not expanded. node is the node's
// allocatable resources, for resourceFieldRef without limits.
func resolveEnv(ctx context.Context, src sources, pod *corev1.Pod, c *corev1.Container, node corev1.ResourceList) (*environ, error) {
	env := &environ{}
	for _, from := range c.EnvFrom {
		if err := addEnvFrom(ctx, src, pod.Namespace, from, env); err != nil {
			return nil, err
		}
	}
	for _, v := range c.Env {
		if v.ValueFrom == nil {
			env.set(v.Name, expand(v.Value, env.lookup))
			continue
		}
		value, ok, err := valueFrom(ctx, src, pod, c, v, node)
		if err != nil {
			return nil, err
		}
		if ok {
			env.set(v.Name, value)
		}
	}
	return env, nil
}

func addEnvFrom(ctx context.Context, src sources, ns string, from corev1.EnvFromSource, env *environ) error {
	var data map[string]string
	switch {
	case from.ConfigMapRef != nil:
		cm, err := src.configMap(ctx, ns, from.ConfigMapRef.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
				return nil
			}
			return fmt.Errorf("reading configmap %q for envFrom: %w", from.ConfigMapRef.Name, err)
		}
		data = cm.Data
	case from.SecretRef != nil:
		s, err := src.secret(ctx, ns, from.SecretRef.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
				return nil
			}
			return fmt.Errorf("reading secret %q for envFrom: %w", from.SecretRef.Name, err)
		}
		data = make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			data[k] = string(v)
		}
	default:
		return nil
	}
	// A map has no order; sorted keys make the result stable.
	for _, k := range slices.Sorted(maps.Keys(data)) {
		name := from.Prefix + k
		if !envName.MatchString(name) {
			continue // the kubelet skips these (with an event)
		}
		env.set(name, data[k])
	}
	return nil
}

func valueFrom(ctx context.Context, src sources, pod *corev1.Pod, c *corev1.Container, v corev1.EnvVar, node corev1.ResourceList) (string, bool, error) {
	from := v.ValueFrom
	switch {
	case from.FieldRef != nil:
		value, err := podField(pod, from.FieldRef.FieldPath)
		if err != nil {
			return "", false, fmt.Errorf("env %s: %w", v.Name, err)
		}
		return value, true, nil
	case from.ResourceFieldRef != nil:
		value, err := resourceField(c, from.ResourceFieldRef, node)
		if err != nil {
			return "", false, fmt.Errorf("env %s: %w", v.Name, err)
		}
		return value, true, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := src.secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("env %s: reading secret %q: %w", v.Name, ref.Name, err)
		}
		b, ok := s.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, &configError{fmt.Sprintf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)}
		}
		return string(b), true, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := src.configMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("env %s: reading configmap %q: %w", v.Name, ref.Name, err)
		}
		s, ok := cm.Data[ref.Key]
		if !ok {
			if b, bin := cm.BinaryData[ref.Key]; bin {
				return string(b), true, nil
			}
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, &configError{fmt.Sprintf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)}
		}
		return s, true, nil
	}
	return "", false, nil
}

func optional(b *bool) bool { return b != nil && *b }

// podField is the downward API's value of path for pod.
func podField(pod *corev1.Pod, path string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		return joinIPs(pod.Status.HostIPs, func(ip corev1.HostIP) string { return ip.IP }), nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		return joinIPs(pod.Status.PodIPs, func(ip corev1.PodIP) string { return ip.IP }), nil
	}
	return "", &configError{fmt.Sprintf("unsupported fieldRef %q", path)}
}

func joinIPs[T any](ips []T, ip func(T) string) string {
	s := make([]string, len(ips))
	for i, v := range ips {
		s[i] = ip(v)
	}
	return strings.Join(s, ",")
}

// subscript parses prefix['key'].
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

// resourceField is resourceFieldRef's value: the container's limit or
// request divided by the divisor, rounded up; a limit not set is the
// node's allocatable amount, as the kubelet does.
func resourceField(c *corev1.Container, ref *corev1.ResourceFieldSelector, node corev1.ResourceList) (string, error) {
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", &configError{fmt.Sprintf("unsupported resourceFieldRef %q", ref.Resource)}
	}
	var list corev1.ResourceList
	switch kind {
	case "limits":
		list = c.Resources.Limits
	case "requests":
		list = c.Resources.Requests
	default:
		return "", &configError{fmt.Sprintf("unsupported resourceFieldRef %q", ref.Resource)}
	}
	q, ok := list[corev1.ResourceName(res)]
	if !ok {
		if kind == "requests" {
			return "0", nil
		}
		q, ok = node[corev1.ResourceName(res)]
		if !ok {
			return "0", nil
		}
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	v := math.Ceil(q.AsApproximateFloat64() / divisor.AsApproximateFloat64())
	return fmt.Sprintf("%d", int64(v)), nil
}
