package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/runtime"
)

const (
	// defaultHealthTimeout is ReplicaSet.HealthTimeout's zero value.
	defaultHealthTimeout = 30 * time.Second
	// startRestarts is how many restarts of a replica fail a Start: one
	// that exited once (its database not up yet) may come up at the next
	// try; one that keeps exiting will not.
	startRestarts = 2
	// logTailLines is how much of a failed replica's log an error shows.
	logTailLines = 20
)

// Start implements runtime.Replicas: the Secret of rs.Vars, the
// Deployment <app>-<version> and the Service <app>, then a wait until the
// Deployment's pods are all ready (from the caches, event-driven). A
// Deployment already there is returned as it is, none of its pods
// restarted; it is only scaled up when rs asks for more replicas. On
// failure what this call created is deleted, and its pods are gone when
// Start returns.
func (r *Runtime) Start(ctx context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error) {
	if err := checkReplicaSet(rs); err != nil {
		return nil, fmt.Errorf("starting a replica set: %w", err)
	}
	if len(rs.Command) == 0 {
		return nil, fmt.Errorf("starting %s %s in %s: no command", rs.App, rs.Version, rs.Env)
	}
	rs.Replicas = max(rs.Replicas, 1)
	if rs.HealthTimeout <= 0 {
		rs.HealthTimeout = defaultHealthTimeout
	}
	what := fmt.Sprintf("starting %s %s in %s", rs.App, rs.Version, rs.Env)
	ns, name := r.Namespace(rs.Env), workloadName(rs.App, rs.Version)

	// Ask what runs before anything else: an unreachable API server fails
	// the start here, before anything is built or created. The namespace
	// first: in one that does not exist (or before its RoleBinding),
	// Runway's ServiceAccount may not even ask for a Deployment.
	var existing *appsv1.Deployment
	switch _, err := r.liveNamespace(ctx, rs.Env); {
	case errors.Is(err, errNoNamespace):
		// Nothing runs; ensureNamespace makes it, or refuses another's.
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	default:
		if existing, err = r.liveDeployment(ctx, ns, name); err != nil {
			return nil, apiError(what, err)
		}
	}
	if existing != nil {
		return r.adoptDeployment(ctx, what, rs, existing)
	}
	tmpl, err := r.PodTemplate(ctx, rs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := r.ensureNamespace(ctx, rs.Env, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := r.ensureVars(ctx, ns, SecretName(rs), workloadLabels(rs.Env, rs.App, rs.Version), rs.Vars); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	d, created, err := r.createDeployment(ctx, rs, tmpl)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !created {
		return r.adoptDeployment(ctx, what, rs, d)
	}
	r.ownVars(ctx, ns, SecretName(rs), d)
	replicas, err := r.awaitReady(ctx, rs, d.UID, rs.Replicas)
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if serr := r.stop(cctx, rs.Env, rs.App, rs.Version); serr != nil {
			r.log.Warn("removing the replicas of a failed start", "env", rs.Env, "app", rs.App, "version", rs.Version, "err", serr)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	r.log.Info("replicas up", "env", rs.Env, "app", rs.App, "version", rs.Version, "replicas", len(replicas), "namespace", ns)
	return replicas, nil
}

// liveDeployment gets a Deployment from the API server, waiting for one
// being deleted (a Stop under way) to be gone; nil when there is none.
func (r *Runtime) liveDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	var deleting types.UID // the one being deleted at the last Get
	giveUp := time.Now().Add(cleanupTimeout)
	for {
		d, err := r.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("getting Deployment %s/%s: %w", ns, name, err)
		case d.DeletionTimestamp == nil:
			return d, nil
		case d.UID == deleting:
			// Still there, though the cache has it gone (or never had
			// it): look again at the recheck interval, not at once, and
			// not for ever (a finalizer that never goes).
			if time.Now().After(giveUp) {
				return nil, fmt.Errorf("the Deployment %s/%s is still being deleted after %s: %w", ns, name, cleanupTimeout, runtime.ErrUnavailable)
			}
			t := time.NewTimer(recheck)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("waiting for Deployment %s/%s to be deleted: %w", ns, name, context.Cause(ctx))
			case <-t.C:
			}
		}
		deleting = d.UID
		err = r.await(ctx, "Deployment "+ns+"/"+name+" to be deleted", func() (bool, string, error) {
			c := r.cache.deployment(ns, d.Labels[LabelApp], d.Labels[LabelVersion])
			return c == nil || c.UID != d.UID, "", nil
		})
		if err != nil {
			return nil, err
		}
	}
}

// adoptDeployment returns the replicas of a Deployment already there once
// they are ready, scaling it up first if rs wants more; it deletes
// nothing on failure (this call did not create it).
func (r *Runtime) adoptDeployment(ctx context.Context, what string, rs runtime.ReplicaSet, d *appsv1.Deployment) ([]runtime.Replica, error) {
	if d.Labels[LabelManagedBy] != ManagedBy || d.Labels[LabelEnv] != rs.Env {
		return nil, fmt.Errorf("%s: Deployment %s/%s exists and is not Runway's", what, d.Namespace, d.Name)
	}
	if d.Labels[LabelApp] != rs.App || d.Labels[LabelVersion] != rs.Version {
		// <app>-<version> is ambiguous: "a-b" at "c" and "a" at "b-c".
		return nil, fmt.Errorf("%s: %w: its Deployment's name %s is taken by %s %s",
			what, runtime.ErrUnsatisfiable, d.Name, d.Labels[LabelApp], d.Labels[LabelVersion])
	}
	if ref, ok := r.builds.cached(rs.App, rs.Dir); ok && templateHash(podTemplate(rs, ref)) != d.Annotations[AnnotationTemplate] {
		// A version is immutable: what runs of it stays as it is. (Only
		// told when the image is at hand: adopting builds nothing.)
		r.log.Info("a replica set already runs with another pod template; kept as it is",
			"env", rs.Env, "app", rs.App, "version", rs.Version, "deployment", d.Name)
	}
	atLeast := 0
	if d.Spec.Replicas != nil && int(*d.Spec.Replicas) < rs.Replicas {
		// The cache may show the old spec.replicas for a while: wait for
		// as many as were asked for, not as many as it says.
		atLeast = rs.Replicas
		patch := []byte(`{"spec":{"replicas":` + strconv.Itoa(rs.Replicas) + `}}`)
		if _, err := r.cs.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return nil, apiError(fmt.Sprintf("%s: scaling Deployment %s/%s to %d", what, d.Namespace, d.Name, rs.Replicas), err)
		}
	}
	replicas, err := r.awaitReady(ctx, rs, d.UID, atLeast)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return replicas, nil
}

// createDeployment makes the Service of rs's app if missing and the
// Deployment of rs; created is false when another call made the
// Deployment first (it is returned then).
func (r *Runtime) createDeployment(ctx context.Context, rs runtime.ReplicaSet, tmpl corev1.PodTemplateSpec) (_ *appsv1.Deployment, created bool, _ error) {
	ns, name := r.Namespace(rs.Env), workloadName(rs.App, rs.Version)
	unlock := r.appLocks.lock(ns + "/" + rs.App)
	defer unlock()
	if err := r.ensureService(ctx, rs.Env, rs.App); err != nil {
		return nil, false, err
	}
	want := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels:      workloadLabels(rs.Env, rs.App, rs.Version),
			Annotations: map[string]string{AnnotationTemplate: templateHash(tmpl)},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr.To(int32(rs.Replicas)),
			Selector:             &metav1.LabelSelector{MatchLabels: workloadLabels(rs.Env, rs.App, rs.Version)},
			Template:             tmpl,
			RevisionHistoryLimit: ptr.To[int32](1),
		},
	}
	d, err := r.cs.AppsV1().Deployments(ns).Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		d, err = r.liveDeployment(ctx, ns, name)
		switch {
		case err != nil:
			return nil, false, apiError("getting Deployment "+ns+"/"+name, err)
		case d == nil:
			return nil, false, fmt.Errorf("the Deployment %s/%s was deleted as it was created: %w", ns, name, runtime.ErrUnavailable)
		}
		return d, false, nil
	}
	if err != nil {
		if unreachable(err) {
			// It may have been made all the same: delete it, if so.
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			if derr := r.cs.AppsV1().Deployments(ns).Delete(cctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); derr != nil && !apierrors.IsNotFound(derr) {
				r.log.Warn("deleting a Deployment whose creation failed", "namespace", ns, "deployment", name, "err", derr)
			}
		}
		return nil, false, apiError(fmt.Sprintf("creating Deployment %s/%s", ns, name), err)
	}
	return d, true, nil
}

// ensureService makes the Service of app in env if it is missing: every
// ready pod of every version of app behind port 80. Callers hold the
// app's lock.
func (r *Runtime) ensureService(ctx context.Context, env, app string) error {
	ns := r.Namespace(env)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: serviceName(app), Namespace: ns,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelApp: app},
		},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelApp: app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
	_, err := r.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	switch {
	case err == nil:
		return nil
	case !apierrors.IsAlreadyExists(err):
		return apiError(fmt.Sprintf("creating Service %s/%s", ns, svc.Name), err)
	}
	cur, err := r.cs.CoreV1().Services(ns).Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return apiError(fmt.Sprintf("getting Service %s/%s", ns, svc.Name), err)
	}
	if !serviceOf(cur, env, app) {
		return fmt.Errorf("%w: the Service %s/%s of %s exists and is not its (labels %v): refusing to use it",
			runtime.ErrUnsatisfiable, ns, svc.Name, app, cur.Labels)
	}
	return nil
}

// serviceOf reports whether svc is Runway's Service of app in env.
func serviceOf(svc *corev1.Service, env, app string) bool {
	return svc.Labels[LabelManagedBy] == ManagedBy && svc.Labels[LabelEnv] == env && svc.Labels[LabelApp] == app
}

// awaitReady waits, from the caches, until the Deployment uid has all
// its pods ready, and returns them sorted by pod name. It fails when a
// pod restarted startRestarts times without being ready (saying how it
// last exited, with its log's end), when the Deployment goes, and at
// rs.HealthTimeout. It waits for at least atLeast pods whatever the
// cached spec.replicas says (a scale-up not seen yet).
func (r *Runtime) awaitReady(ctx context.Context, rs runtime.ReplicaSet, uid types.UID, atLeast int) ([]runtime.Replica, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, rs.HealthTimeout,
		fmt.Errorf("not every replica ready within its health timeout %s", rs.HealthTimeout))
	defer cancel()
	ns := r.Namespace(rs.Env)
	var replicas []runtime.Replica
	var crashed *corev1.Pod
	seen := false
	err := r.await(ctx, "the replicas to be ready", func() (bool, string, error) {
		d := r.cache.deployment(ns, rs.App, rs.Version)
		switch {
		case d == nil && seen:
			return false, "", fmt.Errorf("the Deployment %s/%s was deleted while starting", ns, workloadName(rs.App, rs.Version))
		case d == nil:
			return false, "Deployment not seen yet", nil
		case d.UID != uid || d.DeletionTimestamp != nil:
			return false, "", fmt.Errorf("the Deployment %s/%s was deleted while starting", ns, d.Name)
		}
		seen = true
		want := 1
		if d.Spec.Replicas != nil {
			want = int(*d.Spec.Replicas)
		}
		want = max(want, atLeast)
		var live []*corev1.Pod
		var states []string
		replicas = replicas[:0]
		for _, p := range r.cache.workloadPods(ns, rs.App, rs.Version) {
			if p.DeletionTimestamp != nil {
				continue
			}
			live = append(live, p)
			st := replicaStatus(0, p)
			states = append(states, fmt.Sprintf("%s: %s ready=%t restarts=%d %s", p.Name, st.State, st.Ready, st.Restarts, st.LastExit))
			if st.Restarts >= startRestarts && !st.Ready {
				crashed = p
				return false, "", errCrashLoop
			}
			if st.Ready && st.Addr != "" {
				replicas = append(replicas, runtime.Replica{Addr: st.Addr})
			}
		}
		state := fmt.Sprintf("%d of %d pods ready; %s", len(replicas), want, strings.Join(states, "; "))
		return len(live) == want && len(replicas) == want, state, nil
	})
	if errors.Is(err, errCrashLoop) {
		return nil, r.crashError(ctx, crashed)
	}
	if err != nil && ctx.Err() != nil {
		// Not ready in time, by the caches: an API server that cannot be
		// reached (the caches are stale) is said, not the replicas.
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), liveTimeout)
		defer lcancel()
		_, gerr := r.cs.AppsV1().Deployments(ns).Get(lctx, workloadName(rs.App, rs.Version), metav1.GetOptions{})
		if unreachable(gerr) {
			return nil, apiError(fmt.Sprintf("%v; getting Deployment %s/%s", err, ns, workloadName(rs.App, rs.Version)), gerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return slices.Clone(replicas), nil
}

// errCrashLoop stops awaitReady at a pod that keeps exiting.
var errCrashLoop = errors.New("crash-looping")

// crashError says how a pod that keeps exiting last exited, how often it
// was restarted, and the end of its log.
func (r *Runtime) crashError(ctx context.Context, p *corev1.Pod) error {
	st := replicaStatus(0, p)
	exit := st.LastExit
	if exit == "" {
		exit = "exited"
	}
	tail := r.logTail(context.WithoutCancel(ctx), p)
	return fmt.Errorf("replica %s exited before it was healthy (%s), crash-looping: restarted %d times; log tail:\n%s",
		p.Name, exit, st.Restarts, tail)
}

// logTailTimeout bounds the fetch of a log's end for an error message.
const logTailTimeout = 5 * time.Second

// logTail is the end of the pod's container's log, of its last run if it
// has one, from the kubelet through the API server; a note when it
// cannot be had.
func (r *Runtime) logTail(ctx context.Context, p *corev1.Pod) string {
	ctx, cancel := context.WithTimeout(ctx, logTailTimeout)
	defer cancel()
	var errs []error
	for _, previous := range []bool{true, false} {
		b, err := r.cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{
			Container: containerName, TailLines: ptr.To[int64](logTailLines), LimitBytes: ptr.To[int64](4096), Previous: previous,
		}).DoRaw(ctx)
		if err == nil && len(b) > 0 {
			return string(b)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Sprintf("(no log: %v)", errors.Join(errs...))
	}
	return "(empty)"
}

// Stop implements runtime.Replicas: it deletes the version's Deployment
// (its pods first: foreground deletion) and Secret, and the app's Service
// once no version of the app is left, and returns once the pods are
// gone.
func (r *Runtime) Stop(ctx context.Context, env, app, version string) error {
	if err := checkReplicaSet(runtime.ReplicaSet{Env: env, App: app, Version: version}); err != nil {
		return fmt.Errorf("stopping a replica set: %w", err)
	}
	// No namespace (or another's): nothing of the version runs, and
	// Runway's ServiceAccount may not ask for anything in it.
	if _, err := r.liveNamespace(ctx, env); errors.Is(err, errNoNamespace) {
		return nil
	} else if err != nil {
		return fmt.Errorf("stopping %s %s in %s: %w", app, version, env, err)
	}
	if err := r.stop(ctx, env, app, version); err != nil {
		return fmt.Errorf("stopping %s %s in %s: %w", app, version, env, err)
	}
	return nil
}

// stop is Stop of valid names.
func (r *Runtime) stop(ctx context.Context, env, app, version string) error {
	ns, name := r.Namespace(env), workloadName(app, version)
	d, err := r.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return apiError("getting Deployment "+ns+"/"+name, err)
	case d.Labels[LabelManagedBy] != ManagedBy || d.Labels[LabelApp] != app || d.Labels[LabelVersion] != version:
		// Not this version's (another app's of the same name, or not
		// Runway's): there is nothing of this version to stop.
		return nil
	default:
		err = r.cs.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{
			PropagationPolicy: ptr.To(metav1.DeletePropagationForeground),
			Preconditions:     &metav1.Preconditions{UID: &d.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return apiError("deleting Deployment "+ns+"/"+name, err)
		}
	}
	if err := r.awaitWorkloadGone(ctx, ns, app, version); err != nil {
		return err
	}
	if err := r.deleteSecret(ctx, ns, name, workloadLabels(env, app, version)); err != nil {
		return err
	}
	if err := r.dropServiceIfUnused(ctx, env, app); err != nil {
		return err
	}
	r.log.Info("replicas stopped", "env", env, "app", app, "version", version)
	return nil
}

// awaitWorkloadGone waits until the version's Deployment and pods are
// gone: from the caches (so Status and Running no longer show them) and,
// to be sure, from the API server.
func (r *Runtime) awaitWorkloadGone(ctx context.Context, ns, app, version string) error {
	name := workloadName(app, version)
	sel := labels.SelectorFromSet(map[string]string{LabelManagedBy: ManagedBy, LabelApp: app, LabelVersion: version}).String()
	return r.await(ctx, "the pods of "+ns+"/"+name+" to be gone", func() (bool, string, error) {
		if r.cache.deployment(ns, app, version) != nil {
			return false, "Deployment still cached", nil
		}
		if n := len(r.cache.workloadPods(ns, app, version)); n > 0 {
			return false, fmt.Sprintf("%d pods still cached", n), nil
		}
		if _, err := r.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			if err != nil {
				return false, "", apiError("getting Deployment "+ns+"/"+name, err)
			}
			return false, "Deployment still there", nil
		}
		pods, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, "", apiError("listing the pods of "+ns+"/"+name, err)
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods still there", len(pods.Items)), nil
	})
}

// dropServiceIfUnused deletes app's Service when no Deployment of app is
// left in env.
func (r *Runtime) dropServiceIfUnused(ctx context.Context, env, app string) error {
	ns := r.Namespace(env)
	unlock := r.appLocks.lock(ns + "/" + app)
	defer unlock()
	sel := labels.SelectorFromSet(map[string]string{LabelManagedBy: ManagedBy, LabelApp: app}).String()
	list, err := r.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return apiError("listing the Deployments of "+app+" in "+ns, err)
	}
	if len(list.Items) > 0 {
		return nil
	}
	name := serviceName(app)
	svc, err := r.cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return apiError("getting Service "+ns+"/"+name, err)
	case !serviceOf(svc, env, app):
		return nil // another's of that name: not ours to delete
	}
	err = r.cs.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &svc.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return apiError("deleting Service "+ns+"/"+name, err)
	}
	return nil
}

// replicaAddr is a ready pod's address: its IP and the container port.
func replicaAddr(p *corev1.Pod) string {
	if p.Status.PodIP == "" {
		return ""
	}
	return net.JoinHostPort(p.Status.PodIP, strconv.Itoa(ContainerPort))
}
