package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/runtime"
)

// Destroy implements runtime.Environments: it drops the environment's
// databases (their connections ended first), then deletes its namespace
// (foreground: the namespace controller deletes everything in it) and
// returns once the namespace is gone. A namespace of env's name that is
// not Runway's is left alone.
func (r *Runtime) Destroy(ctx context.Context, env string) error {
	if err := runtime.CheckName("environment", env); err != nil {
		return fmt.Errorf("destroying an environment: %w", err)
	}
	what := "destroying " + env
	ns := r.Namespace(env)
	// Ask first: an unreachable API server fails Destroy before anything
	// is dropped.
	live, err := r.liveNamespace(ctx, env)
	exists := err == nil
	if err != nil && !errors.Is(err, errNoNamespace) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if r.pg != nil {
		if err := r.dropDatabases(ctx, env); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	r.mu.Lock()
	delete(r.dbEnvs, env)
	r.mu.Unlock()
	if !exists {
		return nil
	}
	// A namespace being deleted already (an earlier Destroy's) is the
	// namespace controller's to empty, and its RoleBinding may be gone.
	if live.DeletionTimestamp == nil {
		if err := r.drain(ctx, ns); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	err = r.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(fmt.Sprintf("%s: deleting namespace %s", what, ns), err)
	}
	err = r.await(ctx, "namespace "+ns+" to be gone", func() (bool, string, error) {
		if r.cache.namespace(ns) != nil {
			return false, "still cached", nil
		}
		_, err := r.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, "", nil
		case err != nil:
			return false, "", apiError("getting namespace "+ns, err)
		}
		return false, "still there", nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	r.binder.forget(ns)
	r.log.Info("environment destroyed", "env", env, "namespace", ns)
	return nil
}

// drain deletes Runway's Deployments and Jobs in ns and waits until
// their pods are gone. The namespace controller, given a namespace with
// running pods, waits their whole termination grace period before it
// looks again; given one without, it deletes it at once. They are
// listed and deleted one by one: deploy/rbac.yaml grants delete, not
// deletecollection.
func (r *Runtime) drain(ctx context.Context, ns string) error {
	opts := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}
	list := metav1.ListOptions{LabelSelector: managedSelector}
	deps, err := r.cs.AppsV1().Deployments(ns).List(ctx, list)
	if err != nil {
		return apiError("listing the Deployments of "+ns, err)
	}
	for _, d := range deps.Items {
		if err := r.cs.AppsV1().Deployments(ns).Delete(ctx, d.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return apiError("deleting Deployment "+ns+"/"+d.Name, err)
		}
	}
	jobs, err := r.cs.BatchV1().Jobs(ns).List(ctx, list)
	if err != nil {
		return apiError("listing the Jobs of "+ns, err)
	}
	for _, j := range jobs.Items {
		if err := r.cs.BatchV1().Jobs(ns).Delete(ctx, j.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return apiError("deleting Job "+ns+"/"+j.Name, err)
		}
	}
	return r.await(ctx, "the pods of "+ns+" to be gone", func() (bool, string, error) {
		n := r.cache.podsIn(ns)
		return n == 0, fmt.Sprintf("%d pods left", n), nil
	})
}

// Envs implements runtime.Environments from the namespace cache, with the
// environments that have databases on the server and no namespace (one
// deleted by hand, say).
func (r *Runtime) Envs() []string {
	out := r.cache.envs()
	r.mu.Lock()
	for env := range r.dbEnvs {
		out = append(out, env)
	}
	r.mu.Unlock()
	out = slices.DeleteFunc(out, func(e string) bool { return !runtime.ValidName(e) })
	slices.Sort(out)
	return slices.Compact(out)
}

// StrayAge is how old a variables Secret with no owner, Deployment or
// Job must be before CollectStrays takes it for a stray: a Start or
// RunJob makes its Secret just before its workload.
const StrayAge = 2 * time.Minute

// CollectStrays implements runtime.Environments. The API server records
// everything, so no Deployment is a stray: Versions and Running list
// them all. What a control plane killed mid-call leaves behind is (1) a
// Job no RunJob of this runtime follows, which nobody will read (the
// pipeline runs the step again), and (2) a variables Secret whose
// Deployment or Job was never made or is gone. CollectStrays deletes
// those, in this runtime's namespaces and with Runway's labels only, and
// returns them as "<env>/job/<name>" and "<env>/secret/<name>".
// Anything without Runway's labels, or outside its namespaces, is never
// touched. Jobs are listed in all namespaces (by label); Secrets in each
// of the runtime's namespaces (from the namespace cache) one by one:
// Runway's ServiceAccount may read Secrets in those only.
func (r *Runtime) CollectStrays(ctx context.Context) ([]string, error) {
	jobs, err := r.cs.BatchV1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: managedSelector})
	if err != nil {
		return nil, apiError("collecting strays: listing Jobs", err)
	}
	var removed []string
	var errs []error
	sel := labels.SelectorFromSet(map[string]string{LabelManagedBy: ManagedBy, LabelKind: KindVars}).String()
	var secrets []corev1.Secret
	listed := map[string]bool{} // the namespaces bound and listed
	for _, ns := range r.cache.ownedNamespaces() {
		if ns.DeletionTimestamp != nil {
			continue // everything in it goes with it
		}
		if err := r.ensureBinding(ctx, ns); err != nil {
			errs = append(errs, fmt.Errorf("collecting strays in %s: %w", ns.Name, err))
			continue
		}
		list, err := r.cs.CoreV1().Secrets(ns.Name).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			if c := r.cache.namespace(ns.Name); c == nil || c.UID != ns.UID || c.DeletionTimestamp != nil {
				continue // deleted meanwhile
			}
			errs = append(errs, apiError("collecting strays: listing the Secrets of "+ns.Name, err))
			continue
		}
		listed[ns.Name] = true
		secrets = append(secrets, list.Items...)
	}
	jobNames := map[string]bool{}
	for i := range jobs.Items {
		job := &jobs.Items[i]
		env := job.Labels[LabelEnv]
		key := job.Namespace + "/" + job.Name
		jobNames[key] = true
		// A namespace not listed is one not cached yet (new: the Job is
		// a RunJob's), or not bound (that error is had already).
		if !r.owns(job.Namespace, env) || job.DeletionTimestamp != nil || !listed[job.Namespace] {
			continue
		}
		r.mu.Lock()
		followed := r.jobs[key]
		r.mu.Unlock()
		if followed {
			continue
		}
		if err := r.deleteJob(ctx, job, true); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("removed a stray job", "env", env, "job", job.Name)
		removed = append(removed, env+"/job/"+job.Name)
	}
	for i := range secrets {
		s := &secrets[i]
		env := s.Labels[LabelEnv]
		key := s.Namespace + "/" + s.Name
		if !r.owns(s.Namespace, env) || len(s.OwnerReferences) > 0 || jobNames[key] ||
			secretAge(s, time.Now()) < StrayAge || s.DeletionTimestamp != nil {
			continue
		}
		_, err := r.cs.AppsV1().Deployments(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			if err != nil {
				errs = append(errs, apiError("collecting strays: getting Deployment "+key, err))
			}
			continue
		}
		// As listed: one a retried Start touched (or made anew) since is
		// not deleted.
		pre := &metav1.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion}
		if err := r.cs.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: pre}); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, apiError("collecting strays: deleting Secret "+key, err))
			}
			continue
		}
		r.log.Info("removed a stray secret", "env", env, "secret", s.Name)
		removed = append(removed, env+"/secret/"+s.Name)
	}
	slices.Sort(removed)
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("collecting strays: %w", err)
	}
	return removed, nil
}

// listOne asks for one item: enough to tell the API server answers.
func listOne() metav1.ListOptions { return metav1.ListOptions{Limit: 1} }
