package kubernetes

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// managedSelector selects what Runway made, in every namespace.
var managedSelector = LabelManagedBy + "=" + ManagedBy

// byWorkload indexes pods and Deployments by namespace/app/version.
const byWorkload = "workload"

// cache holds the informers' view of Runway's namespaces, Deployments and
// pods (those of every Runway: owns keeps this runtime's) and wakes
// waiters on every change.
type cache struct {
	namespaces  toolscache.SharedIndexInformer
	deployments toolscache.SharedIndexInformer
	pods        toolscache.SharedIndexInformer
	owns        func(ns, env string) bool

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
}

// newCache starts informers of what carries Runway's label; they run
// until ctx ends.
func newCache(ctx context.Context, cs kubernetes.Interface, owns func(ns, env string) bool) *cache {
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = managedSelector }),
		informers.WithTransform(dropManagedFields))
	c := &cache{
		namespaces:  f.Core().V1().Namespaces().Informer(),
		deployments: f.Apps().V1().Deployments().Informer(),
		pods:        f.Core().V1().Pods().Informer(),
		owns:        owns,
		changed:     make(chan struct{}),
	}
	index := toolscache.Indexers{byWorkload: workloadIndex}
	for _, inf := range []toolscache.SharedIndexInformer{c.deployments, c.pods} {
		// Before Start, AddIndexers cannot fail.
		_ = inf.AddIndexers(index)
	}
	wake := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.wake() },
		UpdateFunc: func(any, any) { c.wake() },
		DeleteFunc: func(any) { c.wake() },
	}
	for _, inf := range []toolscache.SharedIndexInformer{c.namespaces, c.deployments, c.pods} {
		_, _ = inf.AddEventHandler(wake)
	}
	f.StartWithContext(ctx)
	go func() {
		<-ctx.Done()
		f.Shutdown()
	}()
	return c
}

// dropManagedFields keeps the cache small: nothing reads them.
func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// workloadIndex is namespace/app/version of a labelled object.
func workloadIndex(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	l := m.GetLabels()
	if l[LabelApp] == "" || l[LabelVersion] == "" {
		return nil, nil
	}
	return []string{workloadKey(m.GetNamespace(), l[LabelApp], l[LabelVersion])}, nil
}

func workloadKey(ns, app, version string) string { return ns + "/" + app + "/" + version }

// sync waits until every informer has listed once.
func (c *cache) sync(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), c.namespaces.HasSynced, c.deployments.HasSynced, c.pods.HasSynced) {
		return errors.New("the informers did not sync: " + context.Cause(ctx).Error())
	}
	return nil
}

// wake tells every waiter that something changed.
func (c *cache) wake() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// next is closed at the next change.
func (c *cache) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// workloadPods are the cached pods of app at version in ns, of replica
// sets and not of jobs, sorted by name.
func (c *cache) workloadPods(ns, app, version string) []*corev1.Pod {
	objs, _ := c.pods.GetIndexer().ByIndex(byWorkload, workloadKey(ns, app, version))
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Labels[LabelJob] == "" {
			pods = append(pods, p)
		}
	}
	sortByName(pods)
	return pods
}

// deployment is the cached Deployment of app at version in ns, nil if
// none.
func (c *cache) deployment(ns, app, version string) *appsv1.Deployment {
	objs, _ := c.deployments.GetIndexer().ByIndex(byWorkload, workloadKey(ns, app, version))
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == workloadName(app, version) {
			return d
		}
	}
	return nil
}

// allDeployments are the cached Deployments of owned namespaces.
func (c *cache) allDeployments() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, o := range c.deployments.GetStore().List() {
		d, ok := o.(*appsv1.Deployment)
		if ok && c.owns(d.Namespace, d.Labels[LabelEnv]) {
			out = append(out, d)
		}
	}
	return out
}

// jobPods are the cached pods of the Job named job in ns.
func (c *cache) jobPods(ns, job string) []*corev1.Pod {
	var out []*corev1.Pod
	objs, _ := c.pods.GetIndexer().ByIndex(toolscache.NamespaceIndex, ns)
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Labels["batch.kubernetes.io/job-name"] == job {
			out = append(out, p)
		}
	}
	sortByName(out)
	return out
}

// podsIn counts the cached pods (Runway's) in ns.
func (c *cache) podsIn(ns string) int {
	objs, _ := c.pods.GetIndexer().ByIndex(toolscache.NamespaceIndex, ns)
	return len(objs)
}

// envs are the environments of the cached owned namespaces.
func (c *cache) envs() []string {
	var out []string
	for _, o := range c.namespaces.GetStore().List() {
		ns, ok := o.(*corev1.Namespace)
		if ok && c.owns(ns.Name, ns.Labels[LabelEnv]) {
			out = append(out, ns.Labels[LabelEnv])
		}
	}
	return out
}

// ownedNamespaces are the cached owned namespaces, sorted by name.
func (c *cache) ownedNamespaces() []*corev1.Namespace {
	var out []*corev1.Namespace
	for _, o := range c.namespaces.GetStore().List() {
		ns, ok := o.(*corev1.Namespace)
		if ok && c.owns(ns.Name, ns.Labels[LabelEnv]) {
			out = append(out, ns)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// namespace is the cached namespace named name, nil if none.
func (c *cache) namespace(name string) *corev1.Namespace {
	o, ok, _ := c.namespaces.GetStore().GetByKey(name)
	if !ok {
		return nil
	}
	ns, _ := o.(*corev1.Namespace)
	return ns
}

// sortByName sorts pods by name: a replica's index is its place.
func sortByName(pods []*corev1.Pod) {
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
}
