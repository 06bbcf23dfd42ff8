package server

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/argorollouts"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/kubernetes"
	"github.com/runway-cd/runway/internal/workload"
)

// openKubernetes opens the Kubernetes planes: the runtime (a namespace per
// environment, images pushed to the configured registry, databases on an
// existing PostgreSQL server) and Argo Rollouts for production. There is
// no gateway and no embedded metrics store: the cluster's Services route
// and its Prometheus is what the AnalysisTemplates query.
func (s *Server) openKubernetes(ctx context.Context, artifacts *build.Store, clk clock.WithTicker, committed func()) error {
	k := s.cfg.Kubernetes
	restConfig, err := kubeConfig(k.Kubeconfig)
	if err != nil {
		return err
	}
	images, err := kubeImages(k)
	if err != nil {
		return err
	}
	adminURL := ""
	if k.PostgresAdminURLFile != "" {
		b, err := os.ReadFile(k.PostgresAdminURLFile)
		if err != nil {
			return fmt.Errorf("reading kubernetes.postgresAdminURLFile: %w", err)
		}
		adminURL = strings.TrimSpace(string(b))
		s.redactor.Add(adminURL)
		if u, err := url.Parse(adminURL); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				s.redactor.Add(pw)
			}
		}
	}
	rt, err := kubernetes.New(ctx, kubernetes.Options{
		Config: restConfig, Images: images, NamespacePrefix: k.NamespacePrefix,
		PostgresAdminURL: adminURL, PostgresHost: k.PostgresHost, Logger: s.log, Secrets: s.redactor,
		// In a cluster (deploy/), the pod says who it is: the runtime binds
		// that ServiceAccount in each namespace it makes.
		ServiceAccount: kubernetes.ServiceAccount{Namespace: os.Getenv("RUNWAY_POD_NAMESPACE"), Name: os.Getenv("RUNWAY_SERVICE_ACCOUNT")},
	})
	if err != nil {
		return fmt.Errorf("starting the kubernetes runtime: %w", err)
	}
	s.closers = append(s.closers, rt.Close)
	router := &kubeRouter{ns: rt.Namespace, ready: func(env, app, version string) []string {
		var addrs []string
		for _, st := range rt.Status(env, app, version) {
			if st.Ready && st.Addr != "" {
				addrs = append(addrs, st.Addr)
			}
		}
		return addrs
	}}
	s.rt, s.router = rt, router
	ro, err := argorollouts.New(argorollouts.Options{
		Config: restConfig, Templates: rt, ReplicaSets: workload.Starter{RT: rt}, Artifacts: artifacts,
		PrometheusAddress: k.PrometheusAddress,
		Repo:              s.repo, Reporter: s.reporter, Events: s.events, Clock: clk, Logger: s.log,
		Redact: s.redactor.String, Committed: committed,
		Synced: s.cfg.Runtime == RuntimeArgoCD,
	})
	if err != nil {
		return fmt.Errorf("starting the Argo Rollouts driver: %w", err)
	}
	s.rollouts = ro
	// Production's replicas are Argo's: a job reaches the stable ones.
	router.stable = ro.Stable
	if s.cfg.Runtime == RuntimeArgoCD {
		kube, err := k8s.NewForConfig(restConfig)
		if err != nil {
			return fmt.Errorf("making the Kubernetes client: %w", err)
		}
		plane := &argoCDPlane{kube: kube, prefix: k.NamespacePrefix, tokens: s.reporter, secrets: s.redactor, log: s.log,
			// The image the export's charts name: <registry>/<app>:<version>,
			// as the runtime builds a pod template's.
			push: func(ctx context.Context, env, app, version string) error {
				art, err := artifacts.Resolve(app, version, build.App)
				if err != nil {
					return err
				}
				_, err = rt.PodTemplate(ctx, runtime.ReplicaSet{Env: env, App: app, Version: version, Dir: art.Dir, Command: art.Spec.Run.Command})
				return err
			}}
		s.synced = plane
		// Jobs reach the databases the export's PostgreSQL charts make.
		s.rt = syncedRuntime{Runtime: rt, plane: plane}
	}
	return nil
}

// kubeConfig is the client config of a kubeconfig file, or the in-cluster
// one when path is empty.
func kubeConfig(path string) (*rest.Config, error) {
	var (
		c   *rest.Config
		err error
	)
	if path == "" {
		c, err = rest.InClusterConfig()
	} else {
		c, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the Kubernetes client config (kubernetes.kubeconfig %q): %w", path, err)
	}
	c.QPS, c.Burst = 50, 100
	c.UserAgent = "runway"
	return c, nil
}

// kubeImages is the image build of the config: the team's own command,
// or Runway's ko-style build.
func kubeImages(k KubernetesConfig) (kubernetes.Images, error) {
	if k.ImageBuild != "" {
		return &image.Command{Shell: k.ImageBuild, Registry: k.Registry}, nil
	}
	b, err := image.New(image.Options{Registry: k.Registry, Base: k.BaseImage, Insecure: k.RegistryInsecure})
	if err != nil {
		return nil, fmt.Errorf("kubernetes.registry: %w", err)
	}
	return b, nil
}

// kubeRouter is the environment controller's routing table on
// Kubernetes, where the cluster's Services do the routing: it keeps the
// staging routes the controller sets (for its status and garbage
// collection) and answers each with the addresses of its version's ready
// replicas as they are now, so that a functional-test job reaches the app
// by a pod IP (routable across a cluster; a Service name needs the
// cluster's DNS). Production's routes are answered from Argo Rollouts'
// stable version.
type kubeRouter struct {
	ns func(env string) string
	// ready lists the addresses of the ready replicas of app at version
	// in env.
	ready func(env, app, version string) []string
	// stable, if set, is the version serving app in env when no route was
	// set for it (production's, which Argo Rollouts runs).
	stable func(env, app string) string
	mu     sync.Mutex
	routes map[[2]string]gateway.Route
}

func (r *kubeRouter) SetRoute(rt gateway.Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.routes == nil {
		r.routes = map[[2]string]gateway.Route{}
	}
	r.routes[[2]string{rt.Env, rt.App}] = rt
	return nil
}

func (r *kubeRouter) Route(env, app string) (gateway.Route, bool) {
	r.mu.Lock()
	rt, ok := r.routes[[2]string{env, app}]
	r.mu.Unlock()
	if !ok {
		if r.stable == nil {
			return gateway.Route{}, false
		}
		if rt.StableVersion = r.stable(env, app); rt.StableVersion == "" {
			return gateway.Route{}, false
		}
		rt.Env, rt.App = env, app
	}
	addrs := r.ready(env, app, rt.StableVersion)
	if len(addrs) == 0 {
		return rt, ok // as it was set (its pods are being replaced)
	}
	rt.Stable, rt.Listen = nil, addrs[0]
	for _, a := range addrs {
		rt.Stable = append(rt.Stable, gateway.Backend{Addr: a})
	}
	return rt, true
}

func (r *kubeRouter) Routes() []gateway.Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]gateway.Route, 0, len(r.routes))
	for _, rt := range r.routes {
		out = append(out, rt)
	}
	slices.SortFunc(out, func(a, b gateway.Route) int {
		return strings.Compare(a.Env+"/"+a.App, b.Env+"/"+b.App)
	})
	return out
}

func (r *kubeRouter) RemoveRoute(env, app string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.routes, [2]string{env, app})
}

func (r *kubeRouter) RemoveEnv(env string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.routes {
		if k[0] == env {
			delete(r.routes, k)
		}
	}
}

// Host is the app's Service name in the cluster's DNS.
func (r *kubeRouter) Host(env, app string) string {
	return kubernetes.ServiceName(app) + "." + r.ns(env) + ".svc.cluster.local"
}
