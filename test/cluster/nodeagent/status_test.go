package nodeagent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func exited(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func TestPodPhase(t *testing.T) {
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		mains  []containerStatus
		inits  []containerStatus
		uninit bool
		term   bool
		want   corev1.PodPhase
	}{
		{name: "creating", policy: corev1.RestartPolicyAlways, mains: []containerStatus{{state: waiting("ContainerCreating")}}, want: corev1.PodPending},
		{name: "image pull failing", policy: corev1.RestartPolicyAlways, mains: []containerStatus{{state: waiting("ImagePullBackOff")}}, want: corev1.PodPending},
		{name: "running", policy: corev1.RestartPolicyAlways, mains: []containerStatus{{state: running()}}, want: corev1.PodRunning},
		{name: "crash loop is running", policy: corev1.RestartPolicyAlways, mains: []containerStatus{{state: waiting("CrashLoopBackOff"), last: exited(1)}}, want: corev1.PodRunning},
		{name: "job succeeded", policy: corev1.RestartPolicyNever, mains: []containerStatus{{state: exited(0)}}, want: corev1.PodSucceeded},
		{name: "job failed", policy: corev1.RestartPolicyNever, mains: []containerStatus{{state: exited(3)}}, want: corev1.PodFailed},
		{name: "one of two still running", policy: corev1.RestartPolicyNever, mains: []containerStatus{{state: exited(3)}, {state: running()}}, want: corev1.PodRunning},
		{name: "on failure restarting", policy: corev1.RestartPolicyOnFailure, mains: []containerStatus{{state: waiting("CrashLoopBackOff"), last: exited(2)}}, want: corev1.PodRunning},
		{name: "on failure succeeded", policy: corev1.RestartPolicyOnFailure, mains: []containerStatus{{state: exited(0)}}, want: corev1.PodSucceeded},
		{name: "init running", policy: corev1.RestartPolicyAlways, uninit: true, inits: []containerStatus{{state: running()}}, mains: []containerStatus{{state: waiting("PodInitializing")}}, want: corev1.PodPending},
		{name: "init failed, never", policy: corev1.RestartPolicyNever, uninit: true, inits: []containerStatus{{state: exited(1)}}, mains: []containerStatus{{state: waiting("PodInitializing")}}, want: corev1.PodFailed},
		{name: "deleted after clean exit", policy: corev1.RestartPolicyAlways, term: true, mains: []containerStatus{{state: exited(0)}}, want: corev1.PodSucceeded},
		{name: "deleted, killed", policy: corev1.RestartPolicyAlways, term: true, mains: []containerStatus{{state: exited(143)}}, want: corev1.PodFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := podView{initialized: !tt.uninit, terminal: tt.term}
			for i := range tt.mains {
				v.mains = append(v.mains, &tt.mains[i])
			}
			for i := range tt.inits {
				v.inits = append(v.inits, &tt.inits[i])
			}
			if got := podPhase(tt.policy, v); got != tt.want {
				t.Fatalf("podPhase = %s, want %s", got, tt.want)
			}
		})
	}
}

func condition(s corev1.PodStatus, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func TestDesiredStatus(t *testing.T) {
	pod := &corev1.Pod{
		Spec:   corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways, Containers: []corev1.Container{{Name: "app", Image: "r/app@sha256:1"}, {Name: "side", Image: "r/side"}}},
		Status: corev1.PodStatus{QOSClass: corev1.PodQOSBestEffort},
	}
	t0 := metav1.Unix(1000, 0)
	v := podView{
		hostIP: "127.0.0.1", podIP: "127.1.0.5", startTime: t0, initialized: true,
		mains: []*containerStatus{
			{name: "app", state: running(), ready: true, started: true, imageID: "r/app@sha256:1", id: "sim://10"},
			{name: "side", state: running(), ready: false, started: true, restarts: 2},
		},
	}
	s := desiredStatus(pod, v, t0)
	if s.Phase != corev1.PodRunning || s.PodIP != "127.1.0.5" || s.PodIPs[0].IP != "127.1.0.5" || s.HostIP != "127.0.0.1" || s.QOSClass != corev1.PodQOSBestEffort {
		t.Fatalf("status = %+v", s)
	}
	if c := condition(s, corev1.PodReady); c.Status != corev1.ConditionFalse || c.Message != "containers with unready status: [side]" {
		t.Fatalf("Ready = %+v", c)
	}
	if c := condition(s, corev1.PodScheduled); c.Status != corev1.ConditionTrue {
		t.Fatalf("PodScheduled = %+v", c)
	}
	if cs := s.ContainerStatuses[1]; cs.RestartCount != 2 || cs.Ready || cs.Image != "r/side" {
		t.Fatalf("side's status = %+v", cs)
	}

	// Once both are ready, Ready flips with a new transition time; other
	// conditions keep theirs.
	pod.Status = s
	v.mains[1].ready = true
	t1 := metav1.Unix(2000, 0)
	s2 := desiredStatus(pod, v, t1)
	if c := condition(s2, corev1.PodReady); c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Equal(&t1) {
		t.Fatalf("Ready = %+v", c)
	}
	if c := condition(s2, corev1.PodScheduled); !c.LastTransitionTime.Equal(&t0) {
		t.Fatalf("PodScheduled moved: %+v", c)
	}
	if c := condition(s2, corev1.ContainersReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("ContainersReady = %+v", c)
	}

	// A terminal phase stays.
	pod.Status = s2
	pod.Status.Phase = corev1.PodSucceeded
	if s3 := desiredStatus(pod, v, t1); s3.Phase != corev1.PodSucceeded || condition(s3, corev1.PodReady).Reason != "PodCompleted" {
		t.Fatalf("terminal status = %+v", s3)
	}
}
