package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// maxGrace caps a deleted pod's grace period: tests need not wait more.
const maxGrace = 30 * time.Second

// podWorker is the kubelet's work for one pod (by UID): start its
// containers, write its status, and kill and delete it when it is
// deleted. Its goroutine ends when the pod is gone from the API server
// or the agent stops.
type podWorker struct {
	a   *Agent
	uid types.UID
	log *slog.Logger
	dir string

	poke     chan struct{} // cap 1: the pod or a container changed
	gone     chan struct{} // closed when the pod left the API server
	goneOnce sync.Once
	killNow  chan struct{} // closed: grace periods are over
	killOnce sync.Once

	mu           sync.Mutex
	pod          *corev1.Pod // latest seen
	ip           netip.Addr
	startTime    metav1.Time
	inits, mains []*containerStatus
	initialized  bool
	terminal     bool
	grace        time.Duration // of the deletion under way

	written *corev1.PodStatus // the last status written; the worker's goroutine's
}

func newPodWorker(a *Agent, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		a:       a,
		uid:     pod.UID,
		log:     a.log.With("pod", pod.Namespace+"/"+pod.Name, "uid", pod.UID),
		dir:     filepath.Join(a.dir, string(pod.UID)),
		poke:    make(chan struct{}, 1),
		gone:    make(chan struct{}),
		killNow: make(chan struct{}),
		pod:     pod,
	}
	status := func(c corev1.Container, reason string) *containerStatus {
		return &containerStatus{
			name:    c.Name,
			state:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
			logPath: filepath.Join(w.dir, c.Name, "log"),
		}
	}
	mainReason := "ContainerCreating"
	if len(pod.Spec.InitContainers) > 0 {
		mainReason = "PodInitializing"
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, status(c, "PodInitializing"))
	}
	for _, c := range pod.Spec.Containers {
		w.mains = append(w.mains, status(c, mainReason))
	}
	w.initialized = len(pod.Spec.InitContainers) == 0
	return w
}

// observe records the latest pod seen and wakes the worker.
func (w *podWorker) observe(pod *corev1.Pod) {
	w.setPod(pod)
	w.wake()
}

// setPod keeps pod unless the worker has a newer version already (an
// update's answer and the watch race).
func (w *podWorker) setPod(pod *corev1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if newer(pod.ResourceVersion, w.pod.ResourceVersion) {
		w.pod = pod
	}
}

// newer reports whether resource version a is not older than b. They are
// etcd revisions, which the API server does not promise, hence the
// fallback: unparsable means newer.
func newer(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA != nil || errB != nil || x >= y
}

func (w *podWorker) wake() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// update changes container state under the lock and wakes the worker.
func (w *podWorker) update(f func()) {
	w.mu.Lock()
	f()
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) markGone() {
	w.goneOnce.Do(func() { close(w.gone) })
	w.hurry()
}

// hurry ends grace periods: processes are killed at once.
func (w *podWorker) hurry() { w.killOnce.Do(func() { close(w.killNow) }) }

// podGrace is how long a container killed by a failed probe gets.
func (w *podWorker) podGrace() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := maxGrace
	if s := w.pod.Spec.TerminationGracePeriodSeconds; s != nil {
		g = min(time.Duration(*s)*time.Second, maxGrace)
	}
	return g
}

// stopGrace is how long containers stopped by their context get: the
// deletion's grace period, or none when the agent stops.
func (w *podWorker) stopGrace() time.Duration {
	select {
	case <-w.killNow:
		return 0
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grace
}

func (w *podWorker) latest() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// run is the worker's loop.
func (w *podWorker) run() {
	ctx := w.a.ctx
	runCtx, stopContainers := context.WithCancel(ctx)
	defer stopContainers()
	var containersDone chan struct{} // nil until started
	defer func() {
		w.hurry()
		stopContainers()
		if containersDone != nil {
			<-containersDone
		}
		if w.ip.IsValid() {
			w.a.ips.release(w.ip)
		}
		select {
		case <-w.gone:
			if err := os.RemoveAll(w.dir); err != nil {
				w.log.Warn("removing the pod's directory", "err", err)
			}
		default: // the agent stops: Dir is the caller's to remove
		}
	}()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	deleted := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.gone:
			return
		case <-w.poke:
		case <-retry.C:
		}
		pod := w.latest()
		again := false
		switch {
		case pod.DeletionTimestamp != nil && !deleted:
			if !w.terminate(ctx, pod, stopContainers, containersDone) {
				return
			}
			if err := w.syncStatus(ctx); err != nil {
				w.log.Info("writing the final pod status", "err", err)
			}
			if err := w.delete(ctx, pod); err != nil {
				w.log.Warn("deleting the pod", "err", err)
				again = true
			} else {
				deleted = true
			}
		case pod.DeletionTimestamp != nil:
		case containersDone == nil:
			if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				break // finished before this agent saw it: nothing to run
			}
			if err := w.setUp(); err != nil {
				w.log.Error("setting the pod up", "err", err)
				again = true
				break
			}
			containersDone = make(chan struct{})
			w.a.wg.Add(1)
			go func() {
				defer w.a.wg.Done()
				defer close(containersDone)
				w.runContainers(runCtx, pod)
			}()
			fallthrough
		default:
			if err := w.syncStatus(ctx); err != nil {
				w.log.Info("writing the pod status", "err", err)
				again = true
			}
		}
		if again {
			retry.Reset(time.Second)
		}
	}
}

// setUp gives the pod its IP and directory.
func (w *podWorker) setUp() error {
	if !w.ip.IsValid() {
		ip, err := w.a.ips.allocate()
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.ip = ip
		w.startTime = metav1.Now().Rfc3339Copy()
		w.mu.Unlock()
	}
	for _, c := range append(w.inits[:len(w.inits):len(w.inits)], w.mains...) {
		if err := os.MkdirAll(filepath.Dir(c.logPath), 0o711); err != nil {
			return fmt.Errorf("creating the container's directory: %w", err)
		}
	}
	return os.Chmod(w.dir, 0o711)
}

// terminate stops the containers with the deletion's grace period (at
// most maxGrace) and waits for them; false when the agent stopped or the
// pod went first.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod, stop context.CancelFunc, done chan struct{}) bool {
	grace := maxGrace
	if s := pod.DeletionGracePeriodSeconds; s != nil {
		grace = min(time.Duration(*s)*time.Second, maxGrace)
	}
	w.log.Info("pod deleted: stopping its containers", "grace", grace)
	w.mu.Lock()
	w.grace = grace
	w.mu.Unlock()
	stop()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return false
		case <-w.gone:
			return false
		}
	}
	w.mu.Lock()
	w.terminal = true
	w.mu.Unlock()
	return true
}

// delete removes the pod for good, as the kubelet does once its
// containers are stopped; the UID precondition spares a new pod of the
// same name.
func (w *podWorker) delete(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	uid := pod.UID
	err := w.a.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// runContainers runs the init containers in order, then the others
// side by side, until all are done or ctx ends.
func (w *podWorker) runContainers(ctx context.Context, pod *corev1.Pod) {
	initPolicy := corev1.RestartPolicyOnFailure
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
		initPolicy = corev1.RestartPolicyNever
	}
	for i := range pod.Spec.InitContainers {
		r := w.runner(&pod.Spec.InitContainers[i], w.inits[i], initPolicy)
		if !r.run(ctx) {
			return
		}
	}
	w.update(func() {
		w.initialized = true
		for _, st := range w.mains {
			if st.state.Waiting != nil && st.state.Waiting.Reason == "PodInitializing" {
				st.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
			}
		}
	})
	var wg sync.WaitGroup
	for i := range pod.Spec.Containers {
		r := w.runner(&pod.Spec.Containers[i], w.mains[i], pod.Spec.RestartPolicy)
		wg.Go(func() { r.run(ctx) })
	}
	wg.Wait()
}

func (w *podWorker) runner(c *corev1.Container, st *containerStatus, policy corev1.RestartPolicy) *runner {
	return &runner{w: w, c: c, st: st, policy: policy, dir: filepath.Dir(st.logPath)}
}

// view is a copy of the worker's state to compute a status from; the
// container states it points to are never changed in place.
func (w *podWorker) view() podView {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := podView{hostIP: hostIP, startTime: w.startTime, initialized: w.initialized, terminal: w.terminal}
	if w.ip.IsValid() {
		v.podIP = w.ip.String()
	}
	for _, c := range w.inits {
		cp := *c
		v.inits = append(v.inits, &cp)
	}
	for _, c := range w.mains {
		cp := *c
		v.mains = append(v.mains, &cp)
	}
	return v
}

// syncStatus writes the pod's status when it differs from what the API
// server has, re-reading the pod on a conflict.
func (w *podWorker) syncStatus(ctx context.Context) error {
	pod := w.latest()
	v := w.view()
	pods := w.a.cs.CoreV1().Pods(pod.Namespace)
	for range 5 {
		want := desiredStatus(pod, v, metav1.Now().Rfc3339Copy())
		// The last status written counts as written even when the API
		// server stored it normalized: no loop of rewrites.
		if equality.Semantic.DeepEqual(want, pod.Status) || (w.written != nil && equality.Semantic.DeepEqual(want, *w.written)) {
			return nil
		}
		next := pod.DeepCopy()
		next.Status = want
		updated, err := pods.UpdateStatus(ctx, next, metav1.UpdateOptions{})
		switch {
		case err == nil:
			w.log.Debug("pod status written", "phase", want.Phase, "resourceVersion", updated.ResourceVersion)
			w.written = &want
			w.setPod(updated)
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			fresh, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("re-reading pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			if fresh.UID != w.uid {
				return nil
			}
			pod = fresh
			w.setPod(fresh)
		default:
			return fmt.Errorf("updating the status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return fmt.Errorf("updating the status of pod %s/%s: conflicts persist", pod.Namespace, pod.Name)
}
