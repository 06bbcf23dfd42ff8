// Package nodeagent is the one simulated part of the cluster tests: a
// stand-in for the kubelet and the container runtime of a node, which
// cannot run on this machine (no container engine, no root-owned network
// namespaces). The control plane it talks to (etcd, kube-apiserver,
// kube-controller-manager, Argo Rollouts) is the real thing; so are the
// images it runs (pulled from a real OCI registry) and the programs in
// them (real processes).
//
// What it simulates, and how:
//
//   - The node: it registers a Node (Ready, with capacity, InternalIP
//     127.0.0.1 and the port of its kubelet API) and renews its status and
//     its Lease in kube-node-lease.
//   - The scheduler, of which there is none: every pod with no node and
//     the default scheduler name is bound to this node through the
//     pods/binding subresource.
//   - Pod networking: each pod gets a loopback address of its own,
//     127.1.x.y, as status.podIP. Nothing isolates it; a program must bind
//     that address (the pod's env carries it, POD_IP by fieldRef) rather
//     than 0.0.0.0. Addresses are locked by file across processes so
//     agents of concurrent test binaries never hand out the same one.
//   - The container runtime: a container's image is pulled and unpacked
//     (image.Extract, cached by digest) into Dir/<pod-uid>/<container>/rootfs
//     and its command run as a process of this machine in its own process
//     group, its working directory inside that rootfs, with only the
//     container's environment (env and envFrom resolved as the kubelet
//     does, $(VAR) expanded) plus PATH. There is no chroot, no mount or pid
//     namespace, no resource limit: an absolute command path is looked up
//     inside the rootfs, a relative one against the working directory, a
//     bare name in the rootfs' PATH directories and then on the host.
//     As root the process runs as nobody (65534), with
//     CAP_NET_BIND_SERVICE as a container's root has, when Dir and the
//     directories above it let other users through (the rootfs tree is
//     then handed to nobody); else as the agent's own user. A restarted
//     container keeps its rootfs (a real one starts afresh). When the
//     main process exits, what is left of its process group is killed,
//     as a container's pid namespace would be.
//   - The kubelet: probes (httpGet, tcpSocket, exec; readiness, liveness,
//     startup) with Kubernetes' timing fields; restarts per restartPolicy
//     with the kubelet's crash-loop back-off (Options.BackOff, doubling,
//     capped at five minutes); pod status (phase, IPs, conditions,
//     container states) written through the status subresource; graceful
//     deletion (SIGTERM to the process group, SIGKILL after the grace
//     period, at most 30s, then the pod deleted with grace 0); and the
//     kubelet API's /containerLogs over HTTPS, so pods/log through the
//     API server (kubectl logs) works as on a real cluster.
//
// Not simulated: volumes (ignored), sidecar init containers (init
// containers run in order to completion), resource limits, image pull
// policies and pull secrets, services' environment variables, events,
// exec/attach/port-forward, log timestamps and sinceSeconds.
package nodeagent
