package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/runway-cd/runway/internal/runtime"
)

// Status implements runtime.Replicas from the pod cache, without a call
// of the API server: one status per pod of the version, by pod name.
// LogTail is empty (logs are the kubelet's, not the cache's); NextStart
// is unknown (the kubelet's back-off is not in the pod's status).
func (r *Runtime) Status(env, app, version string) []runtime.ReplicaStatus {
	if !runtime.ValidName(env) || !runtime.ValidName(app) || !runtime.ValidName(version) {
		return nil
	}
	pods := r.cache.workloadPods(r.Namespace(env), app, version)
	if len(pods) == 0 {
		return nil
	}
	out := make([]runtime.ReplicaStatus, len(pods))
	for i, p := range pods {
		out[i] = replicaStatus(i, p)
	}
	return out
}

// replicaStatus is what pod p says of its replica.
func replicaStatus(index int, p *corev1.Pod) runtime.ReplicaStatus {
	st := runtime.ReplicaStatus{Index: index, Addr: replicaAddr(p), State: runtime.ReplicaStarting, Since: p.CreationTimestamp.Time}
	ready := podCondition(p, corev1.PodReady)
	st.Ready = ready != nil && ready.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
	cs := appContainer(p.Status.ContainerStatuses)
	if cs != nil {
		st.Restarts = int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil {
			st.LastExit, st.LastExitAt = exitDescription(t), t.FinishedAt.Time
		}
		if t := cs.State.Terminated; t != nil {
			st.LastExit, st.LastExitAt = exitDescription(t), t.FinishedAt.Time
		}
	}
	switch {
	case p.DeletionTimestamp != nil:
		st.State, st.Since = runtime.ReplicaStopping, p.DeletionTimestamp.Time
	case cs == nil:
	case cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff",
		cs.State.Terminated != nil:
		st.State, st.Since = runtime.ReplicaBackOff, st.LastExitAt
	case cs.State.Running != nil:
		started := cs.State.Running.StartedAt.Time
		// Running once it was ready in this run: unready before that is
		// still starting.
		if st.Ready || ready != nil && ready.LastTransitionTime.After(started) {
			st.State = runtime.ReplicaRunning
		}
		st.Since = started
		if ready != nil && ready.LastTransitionTime.After(started) {
			st.Since = ready.LastTransitionTime.Time
		}
	}
	return st
}

// appContainer is the status of the runtime's container.
func appContainer(list []corev1.ContainerStatus) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == containerName {
			return &list[i]
		}
	}
	return nil
}

// podCondition is p's condition of type t, nil if it has none.
func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// exitDescription says how a container run ended, as the local runtime
// does: "exit status N" (or "signal: N"), then the kubelet's reason when
// it says more than that it failed ("OOMKilled", a probe), then the
// first line of its termination message.
func exitDescription(t *corev1.ContainerStateTerminated) string {
	var b strings.Builder
	if t.Signal != 0 {
		b.WriteString("signal: " + strconv.Itoa(int(t.Signal)))
	} else {
		b.WriteString("exit status " + strconv.Itoa(int(t.ExitCode)))
	}
	if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
		b.WriteString(" (" + t.Reason + ")")
	}
	if msg, _, _ := strings.Cut(strings.TrimSpace(t.Message), "\n"); msg != "" {
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		b.WriteString(": " + msg)
	}
	return b.String()
}

// Versions implements runtime.Replicas with a live List of the app's
// Deployments, bounded by liveTimeout: an API server that does not answer
// is an error wrapping runtime.ErrUnavailable. Deployments being deleted
// are left out. The List is of all namespaces, by label, kept to env's:
// Runway's ServiceAccount may list Deployments everywhere, but nothing
// in a namespace that does not exist (yet).
func (r *Runtime) Versions(env, app string) ([]string, error) {
	if err := errors.Join(runtime.CheckName("environment", env), runtime.CheckName("app", app)); err != nil {
		return nil, fmt.Errorf("listing versions: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
	defer cancel()
	ns := r.Namespace(env)
	sel := labels.SelectorFromSet(map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelApp: app}).String()
	list, err := r.cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, apiError(fmt.Sprintf("listing the versions of %s in %s", app, env), err)
	}
	var out []string
	for _, d := range list.Items {
		if v := d.Labels[LabelVersion]; d.Namespace == ns && d.DeletionTimestamp == nil && runtime.ValidName(v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Running implements runtime.Replicas from the Deployment cache: every
// version with a Deployment not being deleted in this runtime's
// namespaces.
func (r *Runtime) Running() []runtime.Deployment {
	var out []runtime.Deployment
	for _, d := range r.cache.allDeployments() {
		if d.DeletionTimestamp != nil || !runtime.ValidName(d.Labels[LabelApp]) || !runtime.ValidName(d.Labels[LabelVersion]) {
			continue
		}
		out = append(out, runtime.Deployment{Env: d.Labels[LabelEnv], App: d.Labels[LabelApp], Version: d.Labels[LabelVersion]})
	}
	slices.SortFunc(out, func(a, b runtime.Deployment) int {
		return cmp.Or(cmp.Compare(a.Env, b.Env), cmp.Compare(a.App, b.App), cmp.Compare(a.Version, b.Version))
	})
	return slices.Compact(out)
}
