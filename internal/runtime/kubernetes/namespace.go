package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runway-cd/runway/internal/runtime"
)

// ensureNamespace makes env's namespace, labelled as Runway's, with the
// annotations given, and Runway's RoleBinding in it (ensureBinding), and
// returns once the cache has it (Envs lists it). A namespace of that
// name that is not Runway's is refused, one being deleted (a Destroy
// under way) is an error to retry.
func (r *Runtime) ensureNamespace(ctx context.Context, env string, annotations map[string]string) error {
	name := r.Namespace(env)
	want := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env},
		Annotations: annotations,
	}}
	ns, err := r.cs.CoreV1().Namespaces().Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		ns, err = r.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return apiError(fmt.Sprintf("making namespace %s of %s", name, env), err)
	}
	switch {
	case ns.Labels[LabelManagedBy] != ManagedBy || ns.Labels[LabelEnv] != env:
		return fmt.Errorf("namespace %s of %s exists and is not Runway's (labels %v): refusing to use it", name, env, ns.Labels)
	case ns.DeletionTimestamp != nil:
		return fmt.Errorf("namespace %s of %s is being deleted: %w: try again once it is gone", name, env, runtime.ErrUnavailable)
	}
	if err := r.ensureBinding(ctx, ns); err != nil {
		return err
	}
	var missing map[string]string
	for k, v := range annotations {
		if ns.Annotations[k] != v {
			if missing == nil {
				missing = map[string]string{}
			}
			missing[k] = v
		}
	}
	if missing != nil {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": missing}})
		if _, err := r.cs.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return apiError(fmt.Sprintf("annotating namespace %s of %s", name, env), err)
		}
	}
	return r.await(ctx, "namespace "+name+" in the cache", func() (bool, string, error) {
		c := r.cache.namespace(name)
		if c == nil {
			return false, "not seen yet", nil
		}
		for k, v := range annotations {
			if c.Annotations[k] != v {
				return false, "annotation " + k + " not seen yet", nil
			}
		}
		return true, "", nil
	})
}

// errNoNamespace says an environment's namespace does not exist.
var errNoNamespace = errors.New("no such environment")

// liveNamespace gets env's namespace from the API server: errNoNamespace
// when there is none, or only another's of that name. It makes sure
// Runway's RoleBinding is in it (ensureBinding; a namespace made before
// the runtime made them gets one), so that what the caller does next
// there is allowed.
func (r *Runtime) liveNamespace(ctx context.Context, env string) (*corev1.Namespace, error) {
	name := r.Namespace(env)
	ns, err := r.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("namespace %s of %s: %w", name, env, errNoNamespace)
	case err != nil:
		return nil, apiError(fmt.Sprintf("getting namespace %s of %s", name, env), err)
	case ns.Labels[LabelManagedBy] != ManagedBy || ns.Labels[LabelEnv] != env:
		return nil, fmt.Errorf("namespace %s of %s is not Runway's: %w", name, env, errNoNamespace)
	}
	if err := r.ensureBinding(ctx, ns); err != nil {
		return nil, fmt.Errorf("namespace %s of %s: %w", name, env, err)
	}
	return ns, nil
}

// keyedMutex is a mutex per key, for what must not interleave on one
// key (a Service and the Deployments that need it).
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu    sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
