// Package cluster starts a real Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-controller-manager, and Argo Rollouts'
// controller when asked, built from source once per machine by
// scripts/cluster-tools.sh into a cache outside the repository. Only the
// node is simulated (package nodeagent); there is no scheduler either:
// the agent binds pods itself.
//
// Every process listens on loopback only (except the Rollouts
// controller's metrics and healthz servers, which have no address flag)
// on free ports, logs into a file under the test's temporary directory,
// and is stopped when the test (Start) or the test binary (RunMain) ends.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// ToolsEnv names the variable holding the directory of the built
// binaries (etcd, kube-apiserver, kube-controller-manager,
// rollouts-controller), which scripts/cluster-tools.sh prints.
const ToolsEnv = "RUNWAY_CLUSTER_TOOLS"

// Options say what to start besides the API server and controller manager.
type Options struct {
	// CRDs are files or directories of CustomResourceDefinitions to
	// install (and wait to be established) before Start returns.
	CRDs []string
	// Rollouts starts Argo Rollouts' controller (its CRDs installed too).
	Rollouts bool
}

// Cluster is a running control plane.
type Cluster struct {
	// Config is an admin's client config (QPS 100, burst 200).
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	// LogDir holds one log per process: etcd.log, kube-apiserver.log,
	// kube-controller-manager.log, rollouts-controller.log.
	LogDir string

	procs []*process // in start order
}

// errNoTools says ToolsEnv is unset.
var errNoTools = errors.New(ToolsEnv + " is not set (export " + ToolsEnv + "=$(bash scripts/cluster-tools.sh))")

// toolsDir returns the tools directory named by ToolsEnv, checking that
// it holds every binary.
func toolsDir() (string, error) {
	dir := os.Getenv(ToolsEnv)
	if dir == "" {
		return "", errNoTools
	}
	for _, b := range binaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", ToolsEnv, dir, err)
		}
		if fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s=%s: %s is not executable", ToolsEnv, dir, b)
		}
	}
	return dir, nil
}

// Require skips t when the tools are not built (ToolsEnv unset), and
// fails it instead when CI=true: CI always runs the cluster tests. It
// fails t when ToolsEnv names a directory without the binaries. It
// returns the tools directory.
func Require(t testing.TB) string {
	t.Helper()
	dir, err := toolsDir()
	switch {
	case errors.Is(err, errNoTools) && os.Getenv("CI") != "true":
		t.Skipf("cluster: %v", err)
	case err != nil:
		t.Fatalf("cluster: %v", err)
	}
	return dir
}

// Start starts a control plane and stops it, with everything it started,
// when t ends. The processes' logs are shown when t fails.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	tools := Require(t)
	c, err := start(context.Background(), tools, t.TempDir(), o)
	if err != nil {
		t.Logf("cluster logs:\n%s", c.logTails(60))
		t.Fatalf("cluster: starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.logTails(40))
		}
		if err := c.stop(); err != nil {
			t.Errorf("cluster: %v", err)
		}
	})
	return c
}

// shared is the control plane of a test binary using RunMain; it is
// package state because testing.M offers no other way to hand it to
// tests. The first Shared call starts it, so that a run whose filter
// selects none of the tests that need it starts nothing.
var shared struct {
	ran  bool    // RunMain was called
	opts Options // what to start

	once    sync.Once
	dir     string   // its files, removed by RunMain
	cluster *Cluster // set once started, nil if it failed
	err     error    // why it failed to start, with its logs
}

// RunMain is a TestMain's body for packages whose tests share one
// control plane: it runs the tests, which get the control plane with
// Shared (started by the first of them), stops it and returns the exit
// code. Without the tools Shared skips the tests, or fails them under
// CI=true.
//
//	func TestMain(m *testing.M) { os.Exit(cluster.RunMain(m, cluster.Options{Rollouts: true})) }
func RunMain(m *testing.M, o Options) int {
	shared.ran, shared.opts = true, o
	code := m.Run()
	if c := shared.cluster; c != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "cluster logs (shared control plane):\n%s\n", c.logTails(40))
		}
		if err := c.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}

// Shared returns the control plane of the test binary, starting it on
// the first call; the package's TestMain must call RunMain. Like Require,
// it skips t when the tools are not built, and fails it under CI=true.
// Tests sharing it should work in namespaces of their own.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !shared.ran {
		t.Fatal("cluster: Shared needs a TestMain calling cluster.RunMain")
	}
	tools := Require(t)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "runway-cluster-")
		if err != nil {
			shared.err = fmt.Errorf("creating a temporary directory: %w", err)
			return
		}
		shared.dir = dir
		c, err := start(context.Background(), tools, dir, shared.opts)
		if err != nil {
			shared.err = fmt.Errorf("starting the shared control plane: %w\ncluster logs:\n%s", err, c.logTails(60))
			return
		}
		shared.cluster = c
	})
	if shared.err != nil {
		t.Fatalf("cluster: %v", shared.err)
	}
	return shared.cluster
}
