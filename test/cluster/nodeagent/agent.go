package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/runway-cd/runway/internal/image"
)

// DefaultNodeName is the node's name when Options.NodeName is empty.
const DefaultNodeName = "runway-sim-node"

// DefaultBackOff is the restart back-off's base, the kubelet's.
const DefaultBackOff = 10 * time.Second

// hostIP is the node's address: pods' status.hostIP, the kubelet API's.
const hostIP = "127.0.0.1"

// nodeAllocatable is what the node says it has.
var nodeAllocatable = corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("8"),
	corev1.ResourceMemory: resource.MustParse("16Gi"),
	corev1.ResourcePods:   resource.MustParse("250"),
}

// Options configure an Agent.
type Options struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// NodeName is the node's name. Empty: DefaultNodeName.
	NodeName string
	// Dir holds the pods' filesystems and logs, and the image cache.
	// Required; created if missing. When the agent runs as root and Dir
	// and every directory above it can be traversed by other users, pods
	// run as nobody (65534); otherwise as the agent's user.
	Dir string
	// Images is how images are pulled (the registry's transport).
	Images image.Options
	// BackOff is the base of the restart and image pull back-off, which
	// doubles up to five minutes. Zero: DefaultBackOff (10s, the
	// kubelet's); tests pass something like 500ms.
	BackOff time.Duration
	// Logger receives the agent's log. Nil: slog.Default().
	Logger *slog.Logger
}

// Agent is a running node.
type Agent struct {
	cs       kubernetes.Interface
	log      *slog.Logger
	node     string
	dir      string
	backOff  time.Duration
	hostPath string
	// unprivileged: pods run as nobody.
	unprivileged bool

	ctx    context.Context // the agent's lifetime, ended by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ips      *ipPool
	images   *imageCache
	srv      *http.Server
	port     int
	factory  informers.SharedInformerFactory
	podStore cache.Indexer
	bindQ    workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	stopping bool
	pods     map[types.UID]*podWorker

	stopOnce sync.Once
}

// Start registers the node and runs pods until Stop. ctx bounds the
// start only; the agent runs until Stop, which the caller must call
// (also when Start fails, nothing is left to stop).
func Start(ctx context.Context, o Options) (*Agent, error) {
	if o.Config == nil || o.Dir == "" {
		return nil, errors.New("starting the node agent: Config and Dir are required")
	}
	a := &Agent{
		log:      o.Logger,
		node:     o.NodeName,
		backOff:  o.BackOff,
		hostPath: os.Getenv("PATH"),
		pods:     map[types.UID]*podWorker{},
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.node == "" {
		a.node = DefaultNodeName
	}
	a.log = a.log.With("node", a.node)
	if a.backOff <= 0 {
		a.backOff = DefaultBackOff
	}
	if a.hostPath == "" {
		a.hostPath = "/usr/local/bin:/usr/bin:/bin"
	}
	var err error
	if a.dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, fmt.Errorf("starting the node agent: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(a.dir, "images"), 0o711); err != nil {
		return nil, fmt.Errorf("starting the node agent: %w", err)
	}
	if err := os.Chmod(a.dir, 0o711); err != nil {
		return nil, fmt.Errorf("starting the node agent: %w", err)
	}
	a.unprivileged = os.Geteuid() == 0 && reachableByOthers(a.dir)
	if os.Geteuid() == 0 && !a.unprivileged {
		a.log.Warn("pods run as root: a directory above Dir is closed to other users", "dir", a.dir)
	}
	a.images = &imageCache{dir: filepath.Join(a.dir, "images"), opts: o.Images, entries: map[string]*imageEntry{}}
	if a.cs, err = kubernetes.NewForConfig(o.Config); err != nil {
		return nil, fmt.Errorf("starting the node agent: client: %w", err)
	}
	if a.ips, err = newIPPool(filepath.Join(os.TempDir(), "runway-nodeagent-ips")); err != nil {
		return nil, fmt.Errorf("starting the node agent: %w", err)
	}
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := a.start(ctx); err != nil {
		a.Stop()
		return nil, fmt.Errorf("starting the node agent: %w", err)
	}
	a.log.Info("node agent started", "kubeletPort", a.port, "dir", a.dir, "asNobody", a.unprivileged)
	return a, nil
}

func (a *Agent) start(ctx context.Context) error {
	if err := a.serveKubeletAPI(); err != nil {
		return err
	}
	if err := a.register(ctx); err != nil {
		return err
	}
	a.wg.Go(a.heartbeat)

	a.bindQ = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodeagent-bind"})
	a.factory = informers.NewSharedInformerFactory(a.cs, 0)
	inf := a.factory.Core().V1().Pods().Informer()
	a.podStore = inf.GetIndexer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.onPod(obj) },
		UpdateFunc: func(_, obj any) { a.onPod(obj) },
		DeleteFunc: a.onPodGone,
	}); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	a.factory.Start(a.ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("watching pods: %w", context.Cause(ctx))
	}
	a.wg.Go(a.binder)
	return nil
}

// Stop kills every pod's process and returns once they are gone, with
// every goroutine of the agent. The Node object stays.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		a.log.Info("node agent stopping")
		a.mu.Lock()
		a.stopping = true
		for _, w := range a.pods {
			w.hurry()
		}
		a.mu.Unlock()
		if a.cancel != nil {
			a.cancel()
		}
		if a.srv != nil {
			// Followed logs end with the agent's context; Shutdown waits
			// for their handlers.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := a.srv.Shutdown(ctx); err != nil {
				a.srv.Close()
			}
			cancel()
		}
		if a.bindQ != nil {
			a.bindQ.ShutDown()
		}
		if a.factory != nil {
			a.factory.Shutdown()
		}
		a.wg.Wait()
		if a.ips != nil {
			a.ips.close()
		}
		a.log.Info("node agent stopped")
	})
}

// NodeName is the node's name.
func (a *Agent) NodeName() string { return a.node }

// KubeletAddr is the kubelet API's address (https://host:port).
func (a *Agent) KubeletAddr() string {
	return "https://" + net.JoinHostPort(hostIP, fmt.Sprint(a.port))
}

func (a *Agent) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName == "" {
		if wantsBinding(pod) {
			if key, err := cache.MetaNamespaceKeyFunc(pod); err == nil {
				a.bindQ.Add(key)
			}
		}
		return
	}
	if pod.Spec.NodeName != a.node {
		return
	}
	a.mu.Lock()
	w, ok := a.pods[pod.UID]
	if !ok {
		if a.stopping {
			a.mu.Unlock()
			return
		}
		w = newPodWorker(a, pod)
		a.pods[pod.UID] = w
		a.wg.Go(func() {
			w.run()
			a.mu.Lock()
			delete(a.pods, w.uid)
			a.mu.Unlock()
		})
	}
	a.mu.Unlock()
	w.observe(pod)
}

func (a *Agent) onPodGone(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	w := a.pods[pod.UID]
	a.mu.Unlock()
	if w != nil {
		w.markGone()
	}
}

// findPod is the worker of the pod namespace/name that is not gone, the
// newest when a deleted pod and its successor of the same name coexist.
func (a *Agent) findPod(namespace, name string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	var found *podWorker
	var created metav1.Time
	for _, w := range a.pods {
		p := w.latest()
		if p.Namespace != namespace || p.Name != name {
			continue
		}
		select {
		case <-w.gone:
			continue
		default:
		}
		if found == nil || created.Before(&p.CreationTimestamp) {
			found, created = w, p.CreationTimestamp
		}
	}
	return found
}

// secret and configMap read what pods' env refers to.
func (a *Agent) secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return a.cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (a *Agent) configMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return a.cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
}
