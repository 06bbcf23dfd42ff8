package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
	_, err := r.liveNamespace(ctx, env)
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
	if err := r.drain(ctx, ns); err != nil {
		return fmt.Errorf("%s: %w", what, err)
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
	r.log.Info("environment destroyed", "env", env, "namespace", ns)
	return nil
}

// drain deletes Runway's Deployments and Jobs in ns and waits until
// their pods are gone. The namespace controller, given a namespace with
// running pods, waits their whole termination grace period before it
// looks again; given one without, it deletes it at once.
func (r *Runtime) drain(ctx context.Context, ns string) error {
	opts := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}
	list := metav1.ListOptions{LabelSelector: managedSelector}
	if err := r.cs.AppsV1().Deployments(ns).DeleteCollection(ctx, opts, list); err != nil && !apierrors.IsNotFound(err) {
		return apiError("deleting the Deployments of "+ns, err)
	}
	if err := r.cs.BatchV1().Jobs(ns).DeleteCollection(ctx, opts, list); err != nil && !apierrors.IsNotFound(err) {
		return apiError("deleting the Jobs of "+ns, err)
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
// touched.
func (r *Runtime) CollectStrays(ctx context.Context) ([]string, error) {
	jobs, err := r.cs.BatchV1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: managedSelector})
	if err != nil {
		return nil, apiError("collecting strays: listing Jobs", err)
	}
	sel := labels.SelectorFromSet(map[string]string{LabelManagedBy: ManagedBy, LabelKind: KindVars}).String()
	secrets, err := r.cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, apiError("collecting strays: listing Secrets", err)
	}
	var removed []string
	var errs []error
	jobNames := map[string]bool{}
	for i := range jobs.Items {
		job := &jobs.Items[i]
		env := job.Labels[LabelEnv]
		key := job.Namespace + "/" + job.Name
		jobNames[key] = true
		if !r.owns(job.Namespace, env) || job.DeletionTimestamp != nil {
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
	for i := range secrets.Items {
		s := &secrets.Items[i]
		env := s.Labels[LabelEnv]
		key := s.Namespace + "/" + s.Name
		if !r.owns(s.Namespace, env) || len(s.OwnerReferences) > 0 || jobNames[key] ||
			time.Since(s.CreationTimestamp.Time) < StrayAge || s.DeletionTimestamp != nil {
			continue
		}
		_, err := r.cs.AppsV1().Deployments(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			if err != nil {
				errs = append(errs, apiError("collecting strays: getting Deployment "+key, err))
			}
			continue
		}
		if err := r.cs.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, apiError("collecting strays: deleting Secret "+key, err))
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
