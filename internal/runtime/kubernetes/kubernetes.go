// Package kubernetes is the runtime of environments on a Kubernetes
// cluster (client-go): an environment is a namespace labelled as Runway's
// and deleted with everything in it on teardown; each app version a
// Deployment (and each app a Service); migrations and tests Jobs whose
// logs and exit status reach the caller; each environment's databases on
// an existing PostgreSQL server. It passes the same conformance suite
// (runtime/runtimetest) as the local runtime.
//
// What runs is read from the API server, never from memory: Start, Stop,
// Destroy, Versions and CollectStrays ask it live (an unreachable API
// server is an error wrapping runtime.ErrUnavailable, never "nothing
// runs"); Status, Running and Envs answer from informer caches of
// Runway's namespaces, pods and Deployments, so they do no I/O. A
// restarted control plane therefore adopts everything as it is.
//
// Names. The namespace of env is NamespacePrefix+env; a Deployment and
// its Secret are <app>-<version>; a Service is ServiceName(app) (<app>,
// or app-<app>-<hash> for one starting with a digit); an app's database
// Secret db.<app>. Each is shortened
// with a hash of the whole when it would pass 63 characters (see
// shorten), so distinct inputs keep distinct names.
//
// Databases. Kubernetes has no PostgreSQL of its own to run per
// environment here: each environment's apps get a role and database of
// their own on an existing server (Options.PostgresAdminURL), created on
// Database and dropped on Destroy. The password lives in a Secret of the
// environment's namespace, so it is the same on every call and after a
// restart.
//
// Strays. Everything the runtime starts is recorded by the API server
// itself, so no Deployment is ever a stray. Two things can still be left
// behind by a control plane killed mid-call: a Job whose RunJob is no
// longer following it (the pipeline runs the step again, so the old one
// only burns resources), and the variables Secret of a Deployment or Job
// that was never created or already deleted. CollectStrays removes those,
// and only in Runway's own namespaces with Runway's labels.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/runway-cd/runway/internal/runtime"
)

// Labels on everything the runtime creates.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by" // value ManagedBy
	ManagedBy      = "runway"
	LabelEnv       = "runway.dev/env"
	LabelApp       = "runway.dev/app"
	LabelVersion   = "runway.dev/version"
	// LabelJob names the job (Job.Name, made a label value) on a Job, its
	// pod and its Secret.
	LabelJob = "runway.dev/job"
	// LabelKind says what a Secret holds: KindVars (a workload's
	// variables) or KindDatabase (an app's database settings).
	LabelKind = "runway.dev/kind"
)

// Values of LabelKind.
const (
	KindVars     = "vars"
	KindDatabase = "database"
)

// Annotations the runtime writes.
const (
	// AnnotationTemplate on a Deployment is the hash of the pod template
	// Start made it with: a Start with the same template changes nothing.
	AnnotationTemplate = "runway.dev/template-hash"
	// AnnotationPostgres on a namespace says EnsurePostgres ran for the
	// environment: its apps may ask for databases.
	AnnotationPostgres = "runway.dev/postgres"
	// AnnotationTouched on a variables Secret is when a call last reused
	// it (RFC 3339): CollectStrays counts its age from then.
	AnnotationTouched = "runway.dev/touched"
)

// ContainerPort is the port every replica listens on (its PortEnv
// variable says so), named "http".
const ContainerPort = 8080

// DefaultNamespacePrefix starts every environment's namespace when
// Options.NamespacePrefix is empty.
const DefaultNamespacePrefix = "runway-"

// Images builds an artifact directory into an image and returns its
// reference by digest (an *image.Builder).
type Images interface {
	Build(ctx context.Context, name, tag, dir string, entrypoint []string) (string, error)
}

// Options configure a Runtime.
type Options struct {
	// Config reaches the API server. Required. Its QPS and Burst, when
	// zero, are raised from client-go's defaults (5 and 10) to 50 and 100:
	// waits are event-driven, but a busy pipeline makes many calls.
	Config *rest.Config
	// Images builds the artifacts' images. Required.
	Images Images
	// NamespacePrefix starts every environment's namespace. Empty:
	// "runway-". It must be a valid start of a DNS label.
	NamespacePrefix string
	// PostgresAdminURL is an existing PostgreSQL server's admin URL: each
	// environment's apps get a database and role of their own there.
	// Empty: environments have no database (Database fails wrapping
	// runtime.ErrUnsatisfiable).
	PostgresAdminURL string
	// PostgresHost is the server's host as pods reach it. Empty: the
	// admin URL's host.
	PostgresHost string
	// Logger receives what the runtime does. Nil: slog.Default().
	Logger *slog.Logger
	// ServiceAccount is who the runtime runs as (its pod's
	// ServiceAccount). Set, the runtime binds EnvironmentRole to it in
	// every namespace of its own (RoleBinding RoleBindingName), which is
	// how deploy/rbac.yaml grants it anything there. Empty: it binds
	// nothing (it runs as someone who may do everything already, such as
	// a cluster admin). Either both fields or neither.
	ServiceAccount ServiceAccount
	// EnvironmentRole is the ClusterRole bound to ServiceAccount in each
	// environment's namespace. Empty: DefaultEnvironmentRole.
	EnvironmentRole string
	// Secrets, when set, learns every database password this runtime
	// hands out (made, or read back from its Secret after a restart), as
	// the local runtime's does: the server passes its *redact.Redactor.
	Secrets interface{ Add(secrets ...string) }
}

// ServiceAccount names a Kubernetes ServiceAccount.
type ServiceAccount struct {
	Namespace, Name string
}

// Runtime runs environments on a cluster.
type Runtime struct {
	cs     kubernetes.Interface
	images Images
	prefix string
	log    *slog.Logger
	cache  *cache
	pg     *postgresServer // nil without PostgresAdminURL
	// secrets learns the database passwords; nil: nobody does.
	secrets interface{ Add(secrets ...string) }

	builds   builds
	appLocks keyedMutex // per namespace/app: its Service beside its Deployments
	binder   binder     // the RoleBinding of each namespace

	mu       sync.Mutex
	jobs     map[string]bool // namespace/name of the Jobs RunJob follows
	dbEnvs   map[string]bool // environments with databases on the server
	closed   bool
	stopInfo context.CancelFunc
}

var _ runtime.Runtime = (*Runtime)(nil)

// Bounds of the runtime's own calls, where the caller gives no context.
const (
	// liveTimeout bounds a live read that has no caller's context
	// (Versions): an API server that does not answer within it is
	// unavailable.
	liveTimeout = 5 * time.Second
	// newTimeout bounds New's first contact with the API server.
	newTimeout = 10 * time.Second
)

// New returns a Runtime; it fails if the API server cannot be reached.
// The runtime's informers run until Close.
func New(ctx context.Context, o Options) (*Runtime, error) {
	if o.Config == nil || o.Images == nil {
		return nil, errors.New("kubernetes runtime: Options.Config and Options.Images are required")
	}
	prefix := o.NamespacePrefix
	if prefix == "" {
		prefix = DefaultNamespacePrefix
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg := rest.CopyConfig(o.Config)
	if cfg.QPS == 0 {
		cfg.QPS = 50
	}
	if cfg.Burst == 0 {
		cfg.Burst = 100
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime: making a client: %w", err)
	}
	return newRuntime(ctx, cs, o, prefix, log)
}

// newRuntime is New with a client made (a fake one, in unit tests).
func newRuntime(ctx context.Context, cs kubernetes.Interface, o Options, prefix string, log *slog.Logger) (*Runtime, error) {
	sa := o.ServiceAccount
	if (sa.Namespace == "") != (sa.Name == "") {
		return nil, fmt.Errorf("kubernetes runtime: Options.ServiceAccount %q/%q: want both its namespace and its name, or neither", sa.Namespace, sa.Name)
	}
	role := o.EnvironmentRole
	if role == "" {
		role = DefaultEnvironmentRole
	}
	r := &Runtime{
		cs: cs, images: o.Images, prefix: prefix, log: log, secrets: o.Secrets,
		jobs: map[string]bool{}, dbEnvs: map[string]bool{},
		binder: binder{account: sa, role: role, grace: bindingGrace, bound: map[string]types.UID{}},
	}
	r.builds.images = o.Images
	if o.PostgresAdminURL != "" {
		pg, err := newPostgresServer(o.PostgresAdminURL, o.PostgresHost)
		if err != nil {
			return nil, err
		}
		r.pg = pg
	}

	vctx, cancel := context.WithTimeout(ctx, newTimeout)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().List(vctx, listOne()); err != nil {
		return nil, apiError("kubernetes runtime: reaching the API server", err)
	}
	infoCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stopInfo = stop
	r.cache = newCache(infoCtx, cs, r.owns)
	if err := r.cache.sync(vctx); err != nil {
		stop()
		return nil, apiError("kubernetes runtime: filling the caches", err)
	}
	if r.pg != nil {
		r.seedDatabaseEnvs(vctx)
	}
	return r, nil
}

// Close stops the runtime's informers; the runtime is not to be used
// after. What runs keeps running: the cluster runs it, not this process.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.stopInfo()
	}
	return nil
}

// Namespace is env's namespace: NamespacePrefix+env, shortened with a
// hash when longer than 63 characters.
func (r *Runtime) Namespace(env string) string { return shorten(r.prefix+env, maxDNSLabel) }

// owns reports whether a namespace named ns with env label env is one of
// this runtime's: another runtime's (another prefix), or a namespace
// merely labelled like one, is not.
func (r *Runtime) owns(ns, env string) bool {
	return runtime.ValidName(env) && ns == r.Namespace(env)
}

// postgresServer is the existing PostgreSQL server the environments'
// databases live on.
type postgresServer struct {
	adminURL string
	host     string // as pods reach it
	port     int
	sslmode  string // the admin URL's, given to apps too; "" if it has none
}

// newPostgresServer parses the admin URL; host overrides its host.
func newPostgresServer(adminURL, host string) (*postgresServer, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("kubernetes runtime: PostgresAdminURL: want postgres://user:password@host:port/database")
	}
	port := 5432
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("kubernetes runtime: PostgresAdminURL: port %q: %w", p, err)
		}
	}
	if host == "" {
		host = u.Hostname()
	}
	if host == "" {
		return nil, errors.New("kubernetes runtime: PostgresAdminURL has no host and PostgresHost is empty: pods could not reach the server")
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return &postgresServer{adminURL: adminURL, host: host, port: port, sslmode: u.Query().Get("sslmode")}, nil
}

// PodTemplate is the pod template Start gives rs's replicas (its image
// built and pushed, environment, probes, labels); the Argo Rollouts driver
// uses it for a Rollout's template. The same rs gives the same template.
// The variables (rs.Vars) are not in it: they are in the Secret named
// SecretName(rs), which the template takes them from (envFrom), and which
// the Rollout's owner must create as Start does (EnsureVars).
func (r *Runtime) PodTemplate(ctx context.Context, rs runtime.ReplicaSet) (corev1.PodTemplateSpec, error) {
	if err := checkReplicaSet(rs); err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("making the pod template: %w", err)
	}
	ref, err := r.builds.build(ctx, rs.App, rs.Version, rs.Dir)
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("making the pod template of %s %s: %w", rs.App, rs.Version, err)
	}
	return podTemplate(rs, ref), nil
}

// checkReplicaSet refuses a replica set whose environment, app or version
// is no valid name.
func checkReplicaSet(rs runtime.ReplicaSet) error {
	return errors.Join(runtime.CheckName("environment", rs.Env), runtime.CheckName("app", rs.App),
		runtime.CheckName("version", rs.Version))
}
