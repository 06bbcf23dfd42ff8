package nodeagent

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerStatus is what the agent knows of one container; the pod
// worker's lock guards it.
type containerStatus struct {
	name     string
	state    corev1.ContainerState
	last     corev1.ContainerState
	ready    bool // readiness
	started  bool // startup probe passed (or none)
	restarts int32
	imageID  string
	id       string // sim://<pid> of the latest process

	logPath   string
	runStarts []int64 // log file offsets where each run began
	exited    chan struct{}
}

func (c *containerStatus) running() bool { return c.state.Running != nil }

// done reports whether the container has terminated for good.
func (c *containerStatus) done() bool { return c.state.Terminated != nil }

func (c *containerStatus) api(image string) corev1.ContainerStatus {
	started := c.running() && c.started
	return corev1.ContainerStatus{
		Name:                 c.name,
		State:                c.state,
		LastTerminationState: c.last,
		Ready:                c.running() && c.ready,
		Started:              &started,
		RestartCount:         c.restarts,
		Image:                image,
		ImageID:              c.imageID,
		ContainerID:          c.id,
	}
}

// podView is a pod worker's state when a status is computed.
type podView struct {
	hostIP, podIP string
	startTime     metav1.Time
	inits, mains  []*containerStatus // in spec order
	// initialized: every init container has completed.
	initialized bool
	// terminal: the pod is being deleted and its containers are stopped.
	terminal bool
}

// desiredStatus computes the status the kubelet would write for pod,
// starting from the status the pod has (fields the agent does not own,
// such as qosClass, are kept).
func desiredStatus(pod *corev1.Pod, v podView, now metav1.Time) corev1.PodStatus {
	s := *pod.Status.DeepCopy()
	if v.hostIP != "" {
		s.HostIP = v.hostIP
		s.HostIPs = []corev1.HostIP{{IP: v.hostIP}}
	}
	if v.podIP != "" {
		s.PodIP = v.podIP
		s.PodIPs = []corev1.PodIP{{IP: v.podIP}}
	}
	if s.StartTime == nil && !v.startTime.IsZero() {
		st := v.startTime
		s.StartTime = &st
	}
	s.InitContainerStatuses = apiStatuses(pod.Spec.InitContainers, v.inits)
	s.ContainerStatuses = apiStatuses(pod.Spec.Containers, v.mains)
	if s.Phase != corev1.PodSucceeded && s.Phase != corev1.PodFailed {
		s.Phase = podPhase(pod.Spec.RestartPolicy, v)
	}
	terminal := s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed

	set := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
			reason, msg = "", ""
		}
		s.Conditions = setCondition(s.Conditions, corev1.PodCondition{Type: t, Status: status, Reason: reason, Message: msg}, now)
	}
	set(corev1.PodScheduled, true, "", "")
	set(corev1.PodReadyToStartContainers, v.podIP != "" && !terminal, "", "")
	if pending := unfinished(v.inits); len(pending) == 0 || v.initialized {
		set(corev1.PodInitialized, true, "", "")
	} else {
		set(corev1.PodInitialized, false, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pending, " ")))
	}
	unready := unready(v.mains)
	reason, msg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		reason, msg = "PodCompleted", ""
	}
	ready := len(unready) == 0 && !terminal && v.initialized
	set(corev1.ContainersReady, ready, reason, msg)
	set(corev1.PodReady, ready, reason, msg)
	return s
}

func apiStatuses(spec []corev1.Container, cs []*containerStatus) []corev1.ContainerStatus {
	if len(spec) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, 0, len(spec))
	for i, c := range spec {
		if i < len(cs) && cs[i] != nil {
			out = append(out, cs[i].api(c.Image))
			continue
		}
		f := false
		out = append(out, corev1.ContainerStatus{
			Name:    c.Name,
			Image:   c.Image,
			Started: &f,
			State:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}},
		})
	}
	return out
}

func unfinished(cs []*containerStatus) []string {
	var names []string
	for _, c := range cs {
		if c == nil || c.state.Terminated == nil || c.state.Terminated.ExitCode != 0 {
			if c != nil {
				names = append(names, c.name)
			}
		}
	}
	return names
}

func unready(cs []*containerStatus) []string {
	var names []string
	for _, c := range cs {
		if !c.running() || !c.ready {
			names = append(names, c.name)
		}
	}
	return names
}

// podPhase is the kubelet's phase rule (its getPhase).
func podPhase(policy corev1.RestartPolicy, v podView) corev1.PodPhase {
	if !v.initialized {
		for _, c := range v.inits {
			if c.done() && c.state.Terminated.ExitCode != 0 && policy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
		}
		if v.terminal {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range v.mains {
		switch {
		case c.state.Running != nil:
			running++
		case c.state.Terminated != nil:
			stopped++
			if c.state.Terminated.ExitCode == 0 {
				succeeded++
			}
		case c.last.Terminated != nil:
			stopped++ // waiting to restart
		default:
			waiting++
		}
	}
	switch {
	case v.terminal:
		if stopped == succeeded && len(v.mains) > 0 && running == 0 && waiting == 0 {
			return corev1.PodSucceeded
		}
		return corev1.PodFailed
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		if policy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// setCondition sets c in conds, keeping the transition time of a
// condition whose status did not change.
func setCondition(conds []corev1.PodCondition, c corev1.PodCondition, now metav1.Time) []corev1.PodCondition {
	for i := range conds {
		if conds[i].Type != c.Type {
			continue
		}
		c.LastTransitionTime = conds[i].LastTransitionTime
		if conds[i].Status != c.Status || c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now
		}
		c.LastProbeTime = conds[i].LastProbeTime
		c.ObservedGeneration = conds[i].ObservedGeneration
		conds[i] = c
		return conds
	}
	c.LastTransitionTime = now
	return append(conds, c)
}
