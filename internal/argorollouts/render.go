package argorollouts

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime/kubernetes"
)

// rolloutInput is what a Rollout is made of: the desired version's spec
// and pod template, and what the controller records beside them.
type rolloutInput struct {
	Env, App, Namespace string
	Version, Workflow   string
	Entry               *manifest.App
	// StableVersion is the version stable when the template changes
	// ("" before the first), StableEntry its manifest entry.
	StableVersion string
	StableEntry   *manifest.App
	Spec          *appspec.Spec
	Pod           corev1.PodTemplateSpec
	Started       time.Time
	// End, if set, is recorded with the template (a template put back
	// on the stable version ends with nothing to report).
	End *endRecord
}

// selector is what the Rollout's pods are selected by: never the version,
// which differs between its stable and canary ReplicaSets.
func selector(env, app string) map[string]string {
	return map[string]string{LabelEnv: env, LabelApp: app}
}

// objectLabels are the labels of everything the controller makes for app.
func objectLabels(env, app string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelApp: app}
}

// renderRollout is the Rollout <app> running in's version: the app spec's
// replicas, canary steps, background analysis and progress deadline
// (aborting when it passes, as Runway's own canary does), over the pod
// template labelled with the version.
func renderRollout(in rolloutInput) (*unstructured.Unstructured, error) {
	if in.Spec == nil {
		return nil, errors.New("rendering the rollout: the artifact has no app spec")
	}
	pod := in.Pod.DeepCopy()
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	maps.Copy(pod.Labels, objectLabels(in.Env, in.App))
	pod.Labels[LabelVersion] = in.Version
	podObj, err := kruntime.DefaultUnstructuredConverter.ToUnstructured(pod)
	if err != nil {
		return nil, fmt.Errorf("rendering the rollout's pod template: %w", err)
	}
	// A zero creationTimestamp is written as null, which the Rollout's
	// schema refuses.
	unstructured.RemoveNestedField(podObj, "metadata", "creationTimestamp")

	canary := map[string]any{}
	args := analysisArgs(in)
	if c := in.Spec.Strategy.Canary; c != nil {
		if len(c.Steps) > 0 {
			steps := make([]any, len(c.Steps))
			for i, st := range c.Steps {
				steps[i] = renderStep(st, args, in)
			}
			canary["steps"] = steps
		}
		if bg := c.Analysis; bg != nil {
			a := renderAnalysis(bg.Templates, append(args, specArgs(bg.Args)...), in)
			if bg.StartingStep > 0 {
				a["startingStep"] = int64(bg.StartingStep)
			}
			canary["analysis"] = a
		}
	}
	replicas := int64(in.Spec.Run.Replicas)
	if replicas == 0 {
		replicas = 1
	}
	annotations := map[string]string{
		annVersion: in.Version, annWorkflow: in.Workflow,
		annStableVersion: in.StableVersion,
		annStarted:       in.Started.UTC().Format(time.RFC3339Nano),
	}
	for key, v := range map[string]any{annEntry: in.Entry, annStableEntry: in.StableEntry, annEnd: in.End} {
		if isNil(v) {
			continue
		}
		s, err := encodeJSON(v)
		if err != nil {
			return nil, err
		}
		annotations[key] = s
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       "Rollout",
		"metadata": map[string]any{
			"name":      in.App,
			"namespace": in.Namespace,
		},
		"spec": map[string]any{
			"replicas":                replicas,
			"selector":                map[string]any{"matchLabels": toAny(selector(in.Env, in.App))},
			"template":                podObj,
			"progressDeadlineSeconds": int64(in.Spec.ProgressDeadline() / time.Second),
			"progressDeadlineAbort":   true,
			"revisionHistoryLimit":    int64(3),
			"strategy":                map[string]any{"canary": canary},
		},
	}}
	u.SetLabels(objectLabels(in.Env, in.App))
	u.SetAnnotations(annotations)
	return u, nil
}

func isNil(v any) bool {
	switch p := v.(type) {
	case *manifest.App:
		return p == nil
	case *endRecord:
		return p == nil
	}
	return v == nil
}

// renderStep is one canary step in Argo's shape.
func renderStep(st appspec.Step, args []any, in rolloutInput) map[string]any {
	switch {
	case st.SetWeight != nil:
		return map[string]any{"setWeight": int64(*st.SetWeight)}
	case st.Pause != nil:
		pause := map[string]any{}
		if d := st.Pause.Duration.Duration; d > 0 {
			pause["duration"] = pauseDuration(d)
		}
		return map[string]any{"pause": pause}
	case st.Analysis != nil:
		return map[string]any{"analysis": renderAnalysis(st.Analysis.Templates, append(args, specArgs(st.Analysis.Args)...), in)}
	}
	return map[string]any{}
}

// pauseDuration is d as Argo reads a pause: whole seconds (Argo counts
// pauses in seconds), at least one.
func pauseDuration(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return fmt.Sprintf("%ds", max(s, 1))
}

// renderAnalysis is a step's or the background's analysis: the templates,
// the arguments and labels naming the run's app and version.
func renderAnalysis(templates []appspec.TemplateRef, args []any, in rolloutInput) map[string]any {
	refs := make([]any, len(templates))
	for i, t := range templates {
		refs[i] = map[string]any{"templateName": templateName(in.App, t.TemplateName)}
	}
	labels := objectLabels(in.Env, in.App)
	labels[LabelVersion] = in.Version
	return map[string]any{
		"templates":           refs,
		"args":                dedupArgs(args),
		"analysisRunMetadata": map[string]any{"labels": toAny(labels)},
	}
}

// analysisArgs are the arguments Runway gives every analysis run, as its
// own canary does: app, env, version, canary-version, stable-version.
// Argo ignores those a template does not declare.
func analysisArgs(in rolloutInput) []any {
	return []any{
		arg("app", in.App), arg("env", in.Env), arg("version", in.Version),
		arg("canary-version", in.Version), arg("stable-version", in.StableVersion),
	}
}

func specArgs(args []appspec.Arg) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = arg(a.Name, a.Value)
	}
	return out
}

func arg(name, value string) any { return map[string]any{"name": name, "value": value} }

// dedupArgs keeps the last value of each name (the spec's own over
// Runway's), in the order names first appear.
func dedupArgs(args []any) []any {
	index := map[string]int{}
	var out []any
	for _, a := range args {
		name := a.(map[string]any)["name"].(string)
		if i, ok := index[name]; ok {
			out[i] = a
			continue
		}
		index[name] = len(out)
		out = append(out, a)
	}
	return out
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// renderService is the Service <app> over all the Rollout's pods (stable
// and canary: without a traffic router Argo's canary weight is the share
// of replicas), with the pod template's container ports; nil when the
// template declares none.
func renderService(env, app, namespace string, pod corev1.PodTemplateSpec) *corev1.Service {
	var ports []corev1.ServicePort
	seen := map[int32]bool{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if seen[p.ContainerPort] {
				continue
			}
			seen[p.ContainerPort] = true
			sp := corev1.ServicePort{Name: p.Name, Port: p.ContainerPort, Protocol: p.Protocol, TargetPort: intstr.FromInt32(p.ContainerPort)}
			if p.Name == "http" {
				sp.Port = 80 // as a staging environment's Service: http://<service>.<namespace>.svc
			}
			if p.Name != "" {
				sp.TargetPort = intstr.FromString(p.Name)
			}
			if sp.Protocol == "" {
				sp.Protocol = corev1.ProtocolTCP
			}
			ports = append(ports, sp)
		}
	}
	if len(ports) == 0 {
		return nil
	}
	if len(ports) > 1 {
		for i := range ports {
			if ports[i].Name == "" {
				ports[i].Name = fmt.Sprintf("port-%d", ports[i].Port)
			}
		}
	}
	svc := &corev1.Service{}
	svc.Name, svc.Namespace, svc.Labels = kubernetes.ServiceName(app), namespace, objectLabels(env, app)
	svc.Spec.Selector = selector(env, app)
	svc.Spec.Ports = ports
	return svc
}
