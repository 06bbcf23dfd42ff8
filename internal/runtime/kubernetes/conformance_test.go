package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/runtimetest"
	"github.com/runway-cd/runway/test/cluster"
	"github.com/runway-cd/runway/test/cluster/nodeagent"
)

// TestMain shares one control plane among the package's cluster tests
// (the unit tests run without it).
func TestMain(m *testing.M) { os.Exit(cluster.RunMain(m, cluster.Options{})) }

// agentBackOff is the node agent's restart back-off: the kubelet's 10s
// would make every crash-loop test wait for it.
const agentBackOff = 500 * time.Millisecond

// TestConformance runs the runtime conformance suite against the
// Kubernetes runtime on a real control plane (etcd, kube-apiserver,
// kube-controller-manager), with the node agent as the one simulated
// part, images in a real registry on loopback and databases on a real
// PostgreSQL server. Every runtime the suite makes has a namespace prefix
// of its own and its API server behind a proxy of its own, which its
// outage cuts.
func TestConformance(t *testing.T) {
	h := newHarness(t)
	runtimetest.Run(t, runtimetest.Harness{
		New:          h.newRuntime,
		Program:      h.program,
		Unrelated:    h.stranger,
		Outage:       h.outage,
		SkipPostgres: h.skipPostgres,
		// One existing server for every environment (Options.PostgresAdminURL).
		SharedPostgres: true,
	})
	t.Run("AStrangerInTheNamespaceGoesWithIt", h.testStrangerInNamespace)
	t.Run("StartRefusesATakenName", h.testTakenName)
	t.Run("DestroyDropsTheDatabases", h.testDestroyDropsTheDatabases)
	t.Run("ARestartAdopts", h.testARestartAdopts)
}

// harness is what the conformance runtimes share: the cluster, the node
// agent, the registry and image builder, the PostgreSQL server.
type harness struct {
	cluster      *cluster.Cluster
	cs           kubernetes.Interface
	images       *image.Builder
	program      runtimetest.Program
	strangerRef  string // the testapp image, for strangers' pods
	adminURL     string // "" without PostgreSQL
	skipPostgres string

	runtimes atomic.Int64
	mu       sync.Mutex
	proxies  map[runtime.Runtime]*cutProxy
}

// newHarness starts what every runtime of the test uses; all of it is
// stopped when t ends.
func newHarness(t *testing.T) *harness {
	c := cluster.Shared(t)
	h := &harness{cluster: c, proxies: map[runtime.Runtime]*cutProxy{}}
	var err error
	if h.cs, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	imgOpts := image.Options{Registry: cluster.Registry(t) + "/runway", Insecure: true}
	if h.images, err = image.New(imgOpts); err != nil {
		t.Fatal(err)
	}

	// The program's dir must be reachable by the agent's unprivileged
	// pods' user only through the image; it is built into the image.
	dir := t.TempDir()
	prog, err := runtimetest.BuildProgram(dir)
	if err != nil {
		t.Fatal(err)
	}
	h.program = runtimetest.Program{Dir: prog.Dir, Command: []string{"./testapp", "-host", "$(POD_IP)"}}
	if h.strangerRef, err = h.images.Build(t.Context(), "stranger", "v1", prog.Dir, nil); err != nil {
		t.Fatal(err)
	}

	agentDir, err := os.MkdirTemp("", "rw-k8s-agent-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(agentDir, 0o711)
	agentLog, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent, err := nodeagent.Start(t.Context(), nodeagent.Options{
		Config: c.Config, Dir: agentDir, Images: imgOpts, BackOff: agentBackOff,
		Logger: slog.New(slog.NewTextHandler(agentLog, nil)),
	})
	if err != nil {
		t.Fatalf("starting the node agent: %v", err)
	}
	t.Cleanup(func() {
		agent.Stop()
		if t.Failed() {
			t.Logf("the node agent's log: %s", agentLog.Name())
		}
		_ = agentLog.Close()
		_ = os.RemoveAll(agentDir)
	})
	h.skipPostgres = cluster.PostgresMissing()
	if h.skipPostgres == "" {
		h.adminURL = cluster.PostgresAdmin(t)
	}
	return h
}

// newRuntime is a fresh runtime with a namespace prefix of its own and
// its API server behind a proxy of its own. When t ends it destroys what
// is left and checks that no namespace and no database of its prefix is.
func (h *harness) newRuntime(t *testing.T) runtime.Runtime {
	n := h.runtimes.Add(1)
	prefix := fmt.Sprintf("rw%d-", n)
	proxy := startProxy(t, h.cluster.Config.Host)
	cfg := rest.CopyConfig(h.cluster.Config)
	cfg.Host = "https://" + proxy.addr
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := New(t.Context(), Options{
		Config: cfg, Images: h.images, NamespacePrefix: prefix,
		PostgresAdminURL: h.adminURL, Logger: logger,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.mu.Lock()
	h.proxies[rt] = proxy
	h.mu.Unlock()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		proxy.restore()
		for _, env := range rt.Envs() {
			if err := rt.Destroy(ctx, env); err != nil {
				t.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		_ = rt.Close(ctx)
		h.mu.Lock()
		delete(h.proxies, rt)
		h.mu.Unlock()
		h.assertNothingLeft(t, ctx, prefix)
	})
	return rt
}

// assertNothingLeft checks that no namespace of prefix, and no database
// of one, is left.
func (h *harness) assertNothingLeft(t *testing.T, ctx context.Context, prefix string) {
	list, err := h.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("listing namespaces: %v", err)
		return
	}
	for _, ns := range list.Items {
		if strings.HasPrefix(ns.Name, prefix) {
			t.Errorf("namespace %s (%s) left after destroying every environment", ns.Name, ns.Status.Phase)
		}
	}
	if h.adminURL == "" {
		return
	}
	conn, err := pgx.Connect(ctx, h.adminURL)
	if err != nil {
		t.Errorf("connecting to PostgreSQL: %v", err)
		return
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE $1", "runway env=% namespace="+prefix+"%")
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("listing databases: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("databases %v left after destroying every environment", left)
	}
}

// outage cuts rt's proxy: the API server becomes unreachable to it (its
// connections reset, new ones refused) while everything keeps running.
func (h *harness) outage(t *testing.T, rt runtime.Runtime) (restore func()) {
	h.mu.Lock()
	p := h.proxies[rt]
	h.mu.Unlock()
	if p == nil {
		t.Fatal("outage of a runtime this harness did not make")
	}
	p.cut()
	return p.restore
}

// stranger starts a pod the runtime did not start, as like one of env's
// own as a stranger can make it: every Runway label (env's name, app
// web, version v1), the same image and command, in a namespace labelled
// as Runway's for env, but not the runtime's namespace of env. A pod in
// env's namespace itself goes with it on Destroy, as everything in it
// does (testStrangerInNamespace). alive: the pod still exists and is not
// being deleted.
func (h *harness) stranger(t *testing.T, env string) (alive func() bool) {
	ctx := t.Context()
	ns := shorten(fmt.Sprintf("stranger-%d-%s", h.runtimes.Load(), env), maxDNSLabel)
	lbl := workloadLabels(env, "web", "v1")
	_, err := h.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("making the stranger's namespace: %v", err)
	}
	pod := h.strangerPod(ns, "web-v1-stranger", lbl)
	created, err := h.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("starting a stranger pod: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	return h.podAlive(ns, created)
}

// strangerPod is a testapp pod with the given labels.
func (h *harness) strangerPod(ns, name string, lbl map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: containerName, Image: h.strangerRef, WorkingDir: image.AppDir,
				Command: append(slices.Clone(h.program.Command), "serve"),
				Env:     append(podEnv("stranger", "web"), corev1.EnvVar{Name: "PORT", Value: "8080"}),
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
}

// podAlive reports whether the pod still exists, the same one, and is
// not being deleted.
func (h *harness) podAlive(ns string, pod *corev1.Pod) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cur, err := h.cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && cur.UID == pod.UID && cur.DeletionTimestamp == nil
	}
}

// testStrangerInNamespace: a pod without Runway's labels in an
// environment's namespace is no stray (CollectStrays leaves it), no
// replica (Status, Versions, Running do not show it), and goes with the
// environment's namespace on Destroy, which deletes everything in it.
func (h *harness) testStrangerInNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rt := h.newRuntime(t).(*Runtime)
	rs := runtime.ReplicaSet{
		Env: "env-a", App: "web", Version: "v1", Dir: h.program.Dir,
		Command: append(slices.Clone(h.program.Command), "serve"), PortEnv: "PORT", HealthPath: "/healthz", Replicas: 1,
	}
	if _, err := rt.Start(ctx, rs); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ns := rt.Namespace("env-a")
	pod, err := h.cs.CoreV1().Pods(ns).Create(ctx, h.strangerPod(ns, "web-v2-stranger", map[string]string{"app": "web"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("starting a stranger in %s: %v", ns, err)
	}
	alive := h.podAlive(ns, pod)
	stopped, err := rt.CollectStrays(ctx)
	if err != nil || len(stopped) != 0 {
		t.Errorf("CollectStrays = %q, %v; want nothing stopped", stopped, err)
	}
	if !alive() {
		t.Error("CollectStrays stopped a pod without Runway's labels")
	}
	if got := versions(t, rt, "env-a", "web"); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("Versions = %v, want [v1]", got)
	}
	if st := rt.Status("env-a", "web", "v2"); st != nil {
		t.Errorf("Status of the stranger's version = %+v", st)
	}
	if err := rt.Destroy(ctx, "env-a"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if alive() {
		t.Error("the stranger in the environment's namespace outlived Destroy")
	}
	if got := rt.Envs(); len(got) != 0 {
		t.Errorf("Envs after Destroy = %v", got)
	}
}

// testTakenName: "a-b" at version "c" and "a" at version "b-c" would
// share the Deployment a-b-c; the second Start is refused, unsatisfiable,
// and its Stop leaves the first alone.
func (h *harness) testTakenName(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rt := h.newRuntime(t).(*Runtime)
	rs := runtime.ReplicaSet{
		Env: "env-a", App: "a-b", Version: "c", Dir: h.program.Dir,
		Command: append(slices.Clone(h.program.Command), "serve"), PortEnv: "PORT", HealthPath: "/healthz", Replicas: 1,
	}
	first, err := rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	clash := rs
	clash.App, clash.Version = "a", "b-c"
	if _, err := rt.Start(ctx, clash); !errors.Is(err, runtime.ErrUnsatisfiable) {
		t.Errorf("Start of a version whose Deployment name is taken = %v, want ErrUnsatisfiable", err)
	}
	if err := rt.Stop(ctx, "env-a", "a", "b-c"); err != nil {
		t.Errorf("Stop of the refused version: %v", err)
	}
	if got := versions(t, rt, "env-a", "a-b"); !slices.Equal(got, []string{"c"}) {
		t.Errorf("Versions(a-b) after stopping the other = %v, want [c]", got)
	}
	if again, err := rt.Start(ctx, rs); err != nil || !slices.Equal(again, first) {
		t.Errorf("Start again = %+v, %v; want the first replicas %+v", again, err, first)
	}
}

// testDestroyDropsTheDatabases: the suite's "Destroy removes the server"
// cannot hold for a shared server, which serves other environments; what
// Destroy promises here is that the environment's role and database are
// gone (the server ending the app's sessions first), and nothing of
// another environment.
func (h *harness) testDestroyDropsTheDatabases(t *testing.T) {
	if h.adminURL == "" {
		t.Skip(h.skipPostgres)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rt := h.newRuntime(t).(*Runtime)
	for _, env := range []string{"env-a", "env-b"} {
		if err := rt.EnsurePostgres(ctx, env); err != nil {
			t.Fatalf("EnsurePostgres(%s): %v", env, err)
		}
	}
	dsn := func(env string) string {
		db, err := rt.Database(ctx, env, "web")
		if err != nil {
			t.Fatalf("Database(%s, web): %v", env, err)
		}
		for _, kv := range db.Env() {
			if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
				return v
			}
		}
		t.Fatalf("Database(%s, web) has no DATABASE_URL: %q", env, db.Env())
		return ""
	}
	doomed, kept := dsn("env-a"), dsn("env-b")
	session, err := pgx.Connect(ctx, doomed)
	if err != nil {
		t.Fatalf("connecting as env-a's web: %v", err)
	}
	defer session.Close(context.Background())

	if err := rt.Destroy(ctx, "env-a"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := session.Ping(ctx); err == nil {
		t.Error("a session of env-a's web outlived Destroy")
	}
	if conn, err := pgx.Connect(ctx, doomed); err == nil {
		conn.Close(ctx)
		t.Error("env-a's web settings still reach a database after Destroy")
	}
	conn, err := pgx.Connect(ctx, kept)
	if err != nil {
		t.Fatalf("env-b's web lost its database to env-a's Destroy: %v", err)
	}
	conn.Close(ctx)
	admin, err := pgx.Connect(ctx, h.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var roles int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", dbName(rt.Namespace("env-a"), "web")).Scan(&roles); err != nil || roles != 0 {
		t.Errorf("env-a's role: %d left, %v", roles, err)
	}
	if got := rt.Envs(); !slices.Equal(got, []string{"env-b"}) {
		t.Errorf("Envs after Destroy = %v, want [env-b]", got)
	}
}

// testARestartAdopts: a new runtime of the same prefix (a restarted
// control plane) sees what the first started, and a Start of it returns
// the same replicas, none restarted.
func (h *harness) testARestartAdopts(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	first := h.newRuntime(t).(*Runtime)
	rs := runtime.ReplicaSet{
		Env: "env-a", App: "web", Version: "v1", Dir: h.program.Dir,
		Command: append(slices.Clone(h.program.Command), "serve"), PortEnv: "PORT", HealthPath: "/healthz", Replicas: 2,
	}
	replicas, err := first.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The first keeps running (its cleanup destroys env-a); the second
	// starts as a restarted control plane would, knowing nothing.
	second, err := New(ctx, Options{Config: h.cluster.Config, Images: h.images, NamespacePrefix: first.prefix, PostgresAdminURL: h.adminURL})
	if err != nil {
		t.Fatalf("New after a restart: %v", err)
	}
	defer second.Close(ctx)
	if got := second.Running(); !slices.Equal(got, []runtime.Deployment{{Env: "env-a", App: "web", Version: "v1"}}) {
		t.Errorf("Running after a restart = %+v", got)
	}
	if got := second.Envs(); !slices.Equal(got, []string{"env-a"}) {
		t.Errorf("Envs after a restart = %v", got)
	}
	again, err := second.Start(ctx, rs)
	if err != nil || !slices.Equal(again, replicas) {
		t.Errorf("Start after a restart = %+v, %v; want the replicas that ran, %+v", again, err, replicas)
	}
	for _, st := range second.Status("env-a", "web", "v1") {
		if st.Restarts != 0 || !st.Ready || st.State != runtime.ReplicaRunning {
			t.Errorf("Status after a restart: %+v, want running, ready, never restarted", st)
		}
	}
	if got, err := second.CollectStrays(ctx); err != nil || len(got) != 0 {
		t.Errorf("CollectStrays after a restart = %q, %v; want nothing", got, err)
	}
}

// versions is rt.Versions, failing the test on error.
func versions(t *testing.T, rt runtime.Runtime, env, app string) []string {
	t.Helper()
	got, err := rt.Versions(env, app)
	if err != nil {
		t.Fatalf("Versions(%s, %s): %v", env, app, err)
	}
	return got
}

// cutProxy forwards TCP connections from a loopback port to target until
// cut, which closes its listener and every connection; restore listens
// on the same port again.
type cutProxy struct {
	target, addr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

// startProxy starts a proxy to the host of an https URL; it is closed
// when t ends.
func startProxy(t *testing.T, host string) *cutProxy {
	u, err := url.Parse(host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: u.Host, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	go p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

// serve accepts on ln until it is closed.
func (p *cutProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies from src to dst, then closes both.
func (p *cutProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes the listener and every connection.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the proxy's port.
func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.ln = ln
			go p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	panic(fmt.Sprintf("proxy: listening on %s again: %v", p.addr, err))
}
