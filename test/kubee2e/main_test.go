// Package kubee2e runs Runway's whole method on Kubernetes: a real
// runway server with runtime: kubernetes, driving a real control plane
// (etcd, kube-apiserver, kube-controller-manager) and Argo Rollouts' real
// controller, with images in a real registry, databases on a real
// PostgreSQL server and the canary's analysis on a real Prometheus. The
// one simulated part is the node (test/cluster/nodeagent), which runs the
// pods as processes of this machine.
package kubee2e

import (
	"os"
	"testing"

	"github.com/runway-cd/runway/test/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.RunMain(m, cluster.Options{Rollouts: true})) }
