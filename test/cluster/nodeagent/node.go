package nodeagent

import (
	"context"
	"fmt"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// heartbeatInterval is how often the node's status and Lease are
// renewed, the kubelet's default.
const heartbeatInterval = 10 * time.Second

// leaseDuration is the node Lease's duration, the kubelet's default.
const leaseDuration = 40

// register creates the Node (or takes over one of that name) and writes
// its status.
func (a *Agent) register(ctx context.Context) error {
	nodes := a.cs.CoreV1().Nodes()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: a.node,
		Labels: map[string]string{
			corev1.LabelHostname:   a.node,
			corev1.LabelOSStable:   runtime.GOOS,
			corev1.LabelArchStable: runtime.GOARCH,
			"runway.dev/simulated": "true",
		},
	}}
	created, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = nodes.Get(ctx, a.node, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering node %s: %w", a.node, err)
	}
	if err := a.writeNodeStatus(ctx, created); err != nil {
		return err
	}
	return a.renewLease(ctx)
}

// writeNodeStatus writes node's status: Ready, capacity, addresses, the
// kubelet API's port, with a fresh heartbeat.
func (a *Agent) writeNodeStatus(ctx context.Context, node *corev1.Node) error {
	now := metav1.Now().Rfc3339Copy()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		for _, old := range node.Status.Conditions {
			if old.Type == t && old.Status == s && !old.LastTransitionTime.IsZero() {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		return c
	}
	n := node.DeepCopy()
	n.Status.Capacity = nodeAllocatable.DeepCopy()
	n.Status.Allocatable = nodeAllocatable.DeepCopy()
	n.Status.Phase = corev1.NodeRunning
	n.Status.Conditions = []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "simulated node"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "simulated node"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "simulated node"),
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "runway's simulated node agent is posting ready status"),
	}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: hostIP},
		{Type: corev1.NodeHostName, Address: a.node},
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(a.port)
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID:               a.node,
		SystemUUID:              a.node,
		BootID:                  a.node,
		KernelVersion:           "simulated",
		OSImage:                 "runway simulated node",
		ContainerRuntimeVersion: "sim://1",
		KubeletVersion:          "v1.37.1-runway-sim",
		OperatingSystem:         runtime.GOOS,
		Architecture:            runtime.GOARCH,
	}
	if _, err := a.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of node %s: %w", a.node, err)
	}
	return nil
}

// renewLease creates or renews the node's Lease in kube-node-lease.
func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	holder, dur := a.node, int32(leaseDuration)
	l, err := leases.Get(ctx, a.node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.node, Namespace: corev1.NamespaceNodeLease},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
		}, metav1.CreateOptions{})
	} else if err == nil {
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &holder, &dur, &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("renewing the lease of node %s: %w", a.node, err)
	}
	return nil
}

// heartbeat keeps the node's status and Lease fresh until Stop.
func (a *Agent) heartbeat() {
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(a.ctx, heartbeatInterval)
		node, err := a.cs.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{})
		if err == nil {
			err = a.writeNodeStatus(ctx, node)
		}
		if err != nil && a.ctx.Err() == nil {
			a.log.Warn("node heartbeat", "err", err)
		}
		if err := a.renewLease(ctx); err != nil && a.ctx.Err() == nil {
			a.log.Warn("node lease", "err", err)
		}
		cancel()
	}
}
