package kubernetes

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runway-cd/runway/internal/runtime"
)

// EnsureVars makes (or brings up to date) the Secret SecretName(rs) in
// rs's environment holding rs.Vars, which rs's pod template takes its
// variables from, and makes the namespace if missing. Start does it
// itself; the Argo Rollouts driver calls it before creating a Rollout of
// PodTemplate(rs), and again with the Rollout as owner once it exists, so
// that deleting the Rollout deletes the Secret too. A variables Secret
// with no owner is a stray once it is older than StrayAge and its
// Deployment or Job does not exist (see CollectStrays).
func (r *Runtime) EnsureVars(ctx context.Context, rs runtime.ReplicaSet, owners ...metav1.OwnerReference) error {
	if err := checkReplicaSet(rs); err != nil {
		return fmt.Errorf("making the variables of a replica set: %w", err)
	}
	if err := r.ensureNamespace(ctx, rs.Env, nil); err != nil {
		return fmt.Errorf("making the variables of %s %s in %s: %w", rs.App, rs.Version, rs.Env, err)
	}
	lbl := workloadLabels(rs.Env, rs.App, rs.Version)
	if err := r.ensureSecret(ctx, r.Namespace(rs.Env), SecretName(rs), lbl, KindVars, varsData(rs.Vars), owners); err != nil {
		return fmt.Errorf("making the variables of %s %s in %s: %w", rs.App, rs.Version, rs.Env, err)
	}
	return nil
}

// ensureVars makes the variables Secret of a workload.
func (r *Runtime) ensureVars(ctx context.Context, ns, name string, lbl map[string]string, vars []string) error {
	return r.ensureSecret(ctx, ns, name, lbl, KindVars, varsData(vars), nil)
}

// varsData is KEY=value variables as a Secret's data; a later one of a
// key wins, as in an environment.
func varsData(vars []string) map[string][]byte {
	data := map[string][]byte{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			data[k] = []byte(v)
		}
	}
	return data
}

// ensureSecret creates the Secret ns/name with data, or makes one already
// there hold it (and the owners given).
func (r *Runtime) ensureSecret(ctx context.Context, ns, name string, lbl map[string]string, kind string, data map[string][]byte, owners []metav1.OwnerReference) error {
	lbl = maps.Clone(lbl)
	lbl[LabelKind] = kind
	want := newSecret(ns, name, lbl, data)
	want.OwnerReferences = owners
	_, err := r.cs.CoreV1().Secrets(ns).Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return apiError("creating Secret "+ns+"/"+name, err)
	}
	for attempt := 1; ; attempt++ {
		err := r.updateSecret(ctx, ns, name, lbl, kind, data, owners)
		if !apierrors.IsConflict(err) || attempt == 3 {
			return err
		}
		// Changed meanwhile (another call reusing it): read it again.
	}
}

// updateSecret makes the Secret ns/name, which exists, hold data and
// the owners given, refusing one without the labels lbl.
func (r *Runtime) updateSecret(ctx context.Context, ns, name string, lbl map[string]string, kind string, data map[string][]byte, owners []metav1.OwnerReference) error {
	cur, err := r.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return apiError("getting Secret "+ns+"/"+name, err)
	}
	for k, v := range lbl {
		if cur.Labels[k] != v {
			return fmt.Errorf("the Secret %s/%s exists and is another's (label %s=%q, not %q): refusing to use it", ns, name, k, cur.Labels[k], v)
		}
	}
	changed := !maps.EqualFunc(cur.Data, data, func(a, b []byte) bool { return string(a) == string(b) })
	if kind == KindVars && len(cur.OwnerReferences) == 0 && len(owners) == 0 {
		// Reused with no owner yet (a retried Start, say): touched, so
		// that CollectStrays, which takes an old one with no owner and no
		// workload for a stray, does not delete it before its workload is
		// made.
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[AnnotationTouched] = time.Now().UTC().Format(time.RFC3339)
		changed = true
	}
	for _, o := range owners {
		if !hasOwner(cur.OwnerReferences, o.UID) {
			cur.OwnerReferences = append(cur.OwnerReferences, o)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	cur.Data = data
	if _, err := r.cs.CoreV1().Secrets(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return apiError("updating Secret "+ns+"/"+name, err)
	}
	return nil
}

// secretAge is how long ago s was made or last reused (AnnotationTouched).
func secretAge(s *corev1.Secret, now time.Time) time.Duration {
	at := s.CreationTimestamp.Time
	if t, err := time.Parse(time.RFC3339, s.Annotations[AnnotationTouched]); err == nil && t.After(at) {
		at = t
	}
	return now.Sub(at)
}

// hasOwner reports whether refs name the object uid.
func hasOwner(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}

// ownVars makes the Deployment d the owner of its variables Secret, so
// that the garbage collector deletes the Secret with it, and no
// CollectStrays takes it for a stray. A failure is only logged: Stop
// deletes the Secret itself.
func (r *Runtime) ownVars(ctx context.Context, ns, name string, d *appsv1.Deployment) {
	owner := ownerRef(appsv1.SchemeGroupVersion.WithKind("Deployment"), d.Name, d.UID)
	if err := r.addOwner(ctx, ns, name, owner); err != nil {
		r.log.Warn("making a Deployment the owner of its Secret", "namespace", ns, "secret", name, "err", err)
	}
}

// addOwner adds owner to the Secret ns/name's owners.
func (r *Runtime) addOwner(ctx context.Context, ns, name string, owner metav1.OwnerReference) error {
	cur, err := r.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return apiError("getting Secret "+ns+"/"+name, err)
	}
	if hasOwner(cur.OwnerReferences, owner.UID) {
		return nil
	}
	cur.OwnerReferences = append(cur.OwnerReferences, owner)
	if _, err := r.cs.CoreV1().Secrets(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return apiError("updating Secret "+ns+"/"+name, err)
	}
	return nil
}

// ownerRef is an owner reference to an object of kind gvk, which does not
// block its owner's deletion.
func ownerRef(gvk schema.GroupVersionKind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: name, UID: uid}
}

// newSecret is an opaque Secret.
func newSecret(ns, name string, lbl map[string]string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
}

// deleteSecret deletes the Secret ns/name if it carries every label of
// want (it is the one meant, not another's of the same name).
func (r *Runtime) deleteSecret(ctx context.Context, ns, name string, want map[string]string) error {
	s, err := r.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return apiError("getting Secret "+ns+"/"+name, err)
	}
	for k, v := range want {
		if s.Labels[k] != v {
			return nil
		}
	}
	err = r.cs.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return apiError("deleting Secret "+ns+"/"+name, err)
	}
	return nil
}
