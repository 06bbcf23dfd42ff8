package kubernetes

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The binding of Runway's permissions in an environment's namespace
// (deploy/rbac.yaml): cluster-wide, Runway's ServiceAccount may only
// manage namespaces, list and watch what it follows, and bind
// DefaultEnvironmentRole; everything it does inside an environment's
// namespace (Secrets, writes, logs) it may do through the RoleBinding
// RoleBindingName the runtime makes there, which goes with the namespace.
const (
	// RoleBindingName is the RoleBinding in each environment's namespace.
	RoleBindingName = "runway"
	// DefaultEnvironmentRole is the ClusterRole bound there when
	// Options.EnvironmentRole is empty: deploy/rbac.yaml's.
	DefaultEnvironmentRole = "runway-environment"
)

const (
	// bindingGrace is how long, right after the RoleBinding is made, a
	// refusal in its namespace is taken for the authorizer not having
	// seen it yet (it learns of RoleBindings through an informer).
	bindingGrace = 30 * time.Second
	// bindingFresh: a RoleBinding found younger than this (another call
	// or process made it) may not be in effect yet either.
	bindingFresh = time.Minute
	// bindingProbe is the Secret a probe of the binding asks for: "not
	// found" (or found) says the binding is in effect, "forbidden" that
	// it is not yet. No Secret of the runtime has this name.
	bindingProbe = "runway-rbac-probe"
)

// binder remembers which namespaces' RoleBindings are known in effect.
type binder struct {
	account ServiceAccount // empty: bind nothing
	role    string
	grace   time.Duration // bindingGrace; shorter in tests
	locks   keyedMutex    // per namespace

	mu    sync.Mutex
	bound map[string]types.UID // namespace name → its UID, when bound
}

// isBound reports whether ns (this namespace of the name, by UID) is
// known bound.
func (b *binder) isBound(ns *corev1.Namespace) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	uid, ok := b.bound[ns.Name]
	return ok && uid == ns.UID
}

// forget drops what is known of the namespace named name (it is gone).
func (b *binder) forget(name string) {
	b.mu.Lock()
	delete(b.bound, name)
	b.mu.Unlock()
}

// ensureBinding makes sure that the RoleBinding RoleBindingName of the
// environment role to the runtime's ServiceAccount is in the namespace
// ns (one of Runway's), and, when it was just made, that it is in
// effect: until the API server's authorizer has seen it, what Runway
// does in ns is refused, so that refusal is retried for a short while
// (bindingGrace). Without a ServiceAccount it does nothing; nor in a
// namespace being deleted (nothing can be made there). Each namespace
// is bound once per process: later calls do no I/O.
func (r *Runtime) ensureBinding(ctx context.Context, ns *corev1.Namespace) error {
	b := &r.binder
	if b.account.Name == "" || ns.DeletionTimestamp != nil || b.isBound(ns) {
		return nil
	}
	// One call per namespace at a time: a second waits for the first to
	// see the binding in effect, rather than be refused.
	unlock := b.locks.lock(ns.Name)
	defer unlock()
	if b.isBound(ns) {
		return nil
	}
	fresh, err := r.createBinding(ctx, ns)
	if err != nil {
		return err
	}
	if fresh {
		if err := r.awaitBinding(ctx, ns.Name); err != nil {
			return err
		}
	}
	b.mu.Lock()
	b.bound[ns.Name] = ns.UID
	b.mu.Unlock()
	return nil
}

// createBinding makes the RoleBinding in ns, or checks the one there;
// fresh says it was just made (by this call or recently by another).
func (r *Runtime) createBinding(ctx context.Context, ns *corev1.Namespace) (fresh bool, _ error) {
	b := &r.binder
	want := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name: RoleBindingName, Namespace: ns.Name,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: ns.Labels[LabelEnv]},
		},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: b.role},
		Subjects: []rbacv1.Subject{{
			Kind: rbacv1.ServiceAccountKind, Name: b.account.Name, Namespace: b.account.Namespace,
		}},
	}
	what := fmt.Sprintf("binding ClusterRole %s to ServiceAccount %s/%s in namespace %s", b.role, b.account.Namespace, b.account.Name, ns.Name)
	_, err := r.cs.RbacV1().RoleBindings(ns.Name).Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		r.log.Info("bound the environment role", "namespace", ns.Name, "role", b.role,
			"serviceAccount", b.account.Namespace+"/"+b.account.Name)
		return true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, apiError(what, err)
	}
	cur, err := r.cs.RbacV1().RoleBindings(ns.Name).Get(ctx, RoleBindingName, metav1.GetOptions{})
	if err != nil {
		return false, apiError(what+": getting the RoleBinding there", err)
	}
	if !b.grants(cur) {
		return false, fmt.Errorf("%s: the RoleBinding %s/%s exists and binds %s %s to %v instead: refusing to use it (delete it and the runtime makes it again)",
			what, ns.Name, RoleBindingName, cur.RoleRef.Kind, cur.RoleRef.Name, cur.Subjects)
	}
	return time.Since(cur.CreationTimestamp.Time) < bindingFresh, nil
}

// grants reports whether rb binds the environment role to the runtime's
// ServiceAccount.
func (b *binder) grants(rb *rbacv1.RoleBinding) bool {
	if rb.RoleRef.APIGroup != rbacv1.GroupName || rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != b.role {
		return false
	}
	for _, s := range rb.Subjects {
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == b.account.Name && s.Namespace == b.account.Namespace {
			return true
		}
	}
	return false
}

// awaitBinding waits, for at most the binder's grace, until a request in
// ns is no longer refused (a Get of a Secret: "not found" is an answer).
func (r *Runtime) awaitBinding(ctx context.Context, ns string) error {
	deadline := time.Now().Add(r.binder.grace)
	delay := 20 * time.Millisecond
	for {
		_, err := r.cs.CoreV1().Secrets(ns).Get(ctx, bindingProbe, metav1.GetOptions{})
		switch {
		case err == nil || apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsForbidden(err):
			return apiError("checking the RoleBinding "+ns+"/"+RoleBindingName+" is in effect", err)
		case !time.Now().Before(deadline):
			return fmt.Errorf("the RoleBinding %s/%s of ClusterRole %s was made, but requests in %s were still refused %s later (is ClusterRole %s as in deploy/rbac.yaml?): %w",
				ns, RoleBindingName, r.binder.role, ns, r.binder.grace, r.binder.role, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the RoleBinding %s/%s to be in effect: %w (last: %w)", ns, RoleBindingName, context.Cause(ctx), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}
