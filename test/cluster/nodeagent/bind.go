package nodeagent

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// maxBindRetries bounds the retries of one pod's binding.
const maxBindRetries = 10

// wantsBinding reports whether the default scheduler would place pod,
// which there is none of: so the agent binds it to its node.
func wantsBinding(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	return pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName
}

// binder binds the queued pods until the queue shuts down.
func (a *Agent) binder() {
	for {
		key, quit := a.bindQ.Get()
		if quit {
			return
		}
		if err := a.bind(key); err != nil {
			if a.bindQ.NumRequeues(key) < maxBindRetries && a.ctx.Err() == nil {
				a.log.Info("binding a pod failed; retrying", "pod", key, "err", err)
				a.bindQ.AddRateLimited(key)
			} else {
				a.log.Error("binding a pod failed", "pod", key, "err", err)
				a.bindQ.Forget(key)
			}
		} else {
			a.bindQ.Forget(key)
		}
		a.bindQ.Done(key)
	}
}

// bind binds the pod of key to this node through pods/binding, as the
// scheduler does.
func (a *Agent) bind(key string) error {
	obj, ok, err := a.podStore.GetByKey(key)
	if err != nil || !ok {
		return err
	}
	pod := obj.(*corev1.Pod)
	if pod.Spec.NodeName != "" || !wantsBinding(pod) {
		return nil
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.node},
	}
	err = a.cs.CoreV1().Pods(ns).Bind(a.ctx, b, metav1.CreateOptions{})
	switch {
	case err == nil:
		a.log.Debug("pod bound", "pod", key)
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // gone, or bound already
	}
	return fmt.Errorf("binding pod %s: %w", key, err)
}
