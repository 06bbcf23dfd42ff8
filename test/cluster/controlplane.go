package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// controllers are the kube-controller-manager controllers the cluster
// runs: the workload, namespace, garbage collection, service account,
// endpoints, claim protection and admission policy status controllers. Not the node lifecycle controller (the node
// agent owns its Node) nor anything needing a cloud.
var controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"job-controller",
	"ttl-after-finished-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"pod-garbage-collector-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"persistentvolume-binder-controller",
	"persistentvolumeclaim-protection-controller",
	"validatingadmissionpolicy-status-controller",
}

// Timeouts of the start, generous: the machine's two cores are shared.
const (
	startTimeout = 3 * time.Minute
	pollInterval = 200 * time.Millisecond
	// RolloutsNamespace is where the Argo Rollouts controller "runs"
	// (POD_NAMESPACE): it looks for its notification ConfigMap there.
	RolloutsNamespace = "argo-rollouts"
)

// binaries are the files the tools directory must hold.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "rollouts-controller"}

// start starts a control plane with its files under dir. On error, what
// was started is stopped again, and the logs stay in c.LogDir for the
// caller to show.
func start(ctx context.Context, tools, dir string, o Options) (c *Cluster, err error) {
	c = &Cluster{LogDir: filepath.Join(dir, "logs")}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return c, fmt.Errorf("creating the log directory: %w", err)
	}
	creds, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return c, fmt.Errorf("creating the cluster's credentials: %w", err)
	}
	etcdURL, err := c.startEtcd(ctx, tools, dir)
	if err != nil {
		return c, err
	}
	if err := c.startAPIServer(ctx, tools, dir, etcdURL, creds); err != nil {
		return c, err
	}
	if err := c.startControllerManager(ctx, tools, dir, creds); err != nil {
		return c, err
	}
	crds := append([]string(nil), o.CRDs...)
	if o.Rollouts {
		rolloutsCRDs, err := moduleCRDs(ArgoRolloutsModule, ArgoRolloutsVersion)
		if err != nil {
			return c, err
		}
		crds = append(crds, rolloutsCRDs)
	}
	if len(crds) > 0 {
		if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
			Paths:              crds,
			ErrorIfPathMissing: true,
			MaxTime:            time.Until(deadline(ctx)),
			PollInterval:       pollInterval,
		}); err != nil {
			return c, fmt.Errorf("installing the CRDs %v: %w", crds, err)
		}
	}
	if o.Rollouts {
		if err := c.startRollouts(ctx, tools); err != nil {
			return c, err
		}
	}
	return c, nil
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(startTimeout)
	}
	return d
}

func (c *Cluster) startEtcd(ctx context.Context, tools, dir string) (string, error) {
	client, peer, err := freePorts2()
	if err != nil {
		return "", err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := c.run("etcd", filepath.Join(tools, "etcd"), []string{
		"--name=runway-test",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=runway-test=" + peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return "", err
	}
	err = waitFor(ctx, "etcd to be healthy", p, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, clientURL+"/health")
	})
	return clientURL, err
}

func (c *Cluster) startAPIServer(ctx context.Context, tools, dir, etcdURL string, creds *pki) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := c.run("kube-apiserver", filepath.Join(tools, "kube-apiserver"), []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		// Loopback only: no Endpoints for the kubernetes Service then
		// (they may not be loopback), as nothing in the cluster could
		// reach its ClusterIP anyway.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(dir, "apiserver"),
		"--tls-cert-file=" + creds.serverCert,
		"--tls-private-key-file=" + creds.serverKey,
		"--client-ca-file=" + creds.caCert,
		// Set only so that controllers reading the
		// extension-apiserver-authentication ConfigMap find it complete;
		// no front proxy exists nor gets a certificate of that name.
		"--requestheader-client-ca-file=" + creds.caCert,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + creds.saPub,
		"--service-account-signing-key-file=" + creds.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// The node agent serves the kubelet API on 127.0.0.1, its
		// Node's InternalIP; the API server is its client as an admin.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate=" + creds.adminCert,
		"--kubelet-client-key=" + creds.adminKey,
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := creds.kubeconfig("https://127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	c.Config, err = clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	c.Config.QPS, c.Config.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	return waitFor(ctx, "kube-apiserver to be ready", p, func(ctx context.Context) error {
		if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			return err
		}
		_, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		return err
	})
}

func (c *Cluster) startControllerManager(ctx context.Context, tools, dir string, creds *pki) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := c.run("kube-controller-manager", filepath.Join(tools, "kube-controller-manager"), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--controllers=" + strings.Join(controllers, ","),
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + creds.saKey,
		"--root-ca-file=" + creds.caCert,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "controller-manager"),
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	insecure := &http.Client{Transport: &http.Transport{
		// Its serving certificate is self-signed, made at start.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe
	}}
	// Healthy, and the service account controller has done its first
	// pass: pods can be created in namespaces from now on.
	return waitFor(ctx, "kube-controller-manager to be healthy", p, func(ctx context.Context) error {
		if err := httpOK(ctx, insecure, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz"); err != nil {
			return err
		}
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func (c *Cluster) startRollouts(ctx context.Context, tools string) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: RolloutsNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", RolloutsNamespace, err)
	}
	metrics, healthz, err := freePorts2()
	if err != nil {
		return err
	}
	// Its metrics and healthz servers listen on all addresses (it has no
	// flag for that); only loopback is ever used.
	p, err := c.run("rollouts-controller", filepath.Join(tools, "rollouts-controller"), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--metricsPort=" + strconv.Itoa(metrics),
		"--healthzPort=" + strconv.Itoa(healthz),
		"--loglevel=info",
	}, []string{"POD_NAMESPACE=" + RolloutsNamespace})
	if err != nil {
		return err
	}
	return waitFor(ctx, "rollouts-controller to be healthy", p, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(healthz)+"/healthz")
	})
}

// run starts a process of the cluster, to be stopped with it.
func (c *Cluster) run(name, bin string, args, env []string) (*process, error) {
	p, err := startProcess(name, bin, args, env, c.LogDir)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// stop stops every process, the last started first.
func (c *Cluster) stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs = append(errs, c.procs[i].stop())
	}
	return errors.Join(errs...)
}

// logTails returns the last n lines of each process' log.
func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		status := "running"
		if ok, err := p.exited(); ok {
			status = fmt.Sprintf("exited: %v", err)
		}
		fmt.Fprintf(&b, "=== %s (%s), last %d lines of %s\n%s\n", p.name, status, n, p.logPath, tail(p.logPath, n))
	}
	return b.String()
}

// waitFor polls check until it succeeds, p exits or ctx ends.
func waitFor(ctx context.Context, what string, p *process, check func(context.Context) error) error {
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("waiting for %s: %s exited (%v); see %s", what, p.name, err, p.logPath)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v); see %s", what, ctx.Err(), err, p.logPath)
		case <-time.After(pollInterval):
		}
	}
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePorts2 returns two distinct free loopback ports.
func freePorts2() (int, int, error) {
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l1.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l2.Close()
	return l1.Addr().(*net.TCPAddr).Port, l2.Addr().(*net.TCPAddr).Port, nil
}
