package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The modules whose manifests/crds directories the tests install. They
// are read from the Go module cache at test time, never copied into the
// repository.
const (
	ArgoRolloutsModule  = "github.com/argoproj/argo-rollouts"
	ArgoRolloutsVersion = "v1.10.2" // also tools/cluster/rollouts/go.mod
	ArgoCDModule        = "github.com/argoproj/argo-cd/v3"
	ArgoCDVersion       = "v3.6.1"

	// moduleToolchain is the Go toolchain that may read those modules:
	// both declare a newer Go than the machine's (1.26.10, 1.27.0), and
	// the go command refuses to download them otherwise. It comes from
	// the Go module proxy, once per machine.
	moduleToolchain = "go1.27.3"
)

// ArgoRolloutsCRDs returns the manifests/crds directory of Argo Rollouts
// (ArgoRolloutsVersion) in the Go module cache, downloading the module
// when needed.
func ArgoRolloutsCRDs(t testing.TB) string {
	t.Helper()
	dir, err := moduleCRDs(ArgoRolloutsModule, ArgoRolloutsVersion)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// ArgoCDCRDs returns the manifests/crds directory of Argo CD
// (ArgoCDVersion) in the Go module cache, downloading the module when
// needed. Only its CRD files are used; nothing of Argo CD runs.
func ArgoCDCRDs(t testing.TB) string {
	t.Helper()
	dir, err := moduleCRDs(ArgoCDModule, ArgoCDVersion)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var moduleDirs sync.Map // "path@version" -> *moduleDir

type moduleDir struct {
	once sync.Once
	dir  string
	err  error
}

// moduleCRDs downloads path@version (a no-op when cached) and returns its
// manifests/crds directory.
func moduleCRDs(path, version string) (string, error) {
	v, _ := moduleDirs.LoadOrStore(path+"@"+version, &moduleDir{})
	m := v.(*moduleDir)
	m.once.Do(func() {
		m.dir, m.err = downloadModule(path, version)
		if m.err == nil {
			m.dir = filepath.Join(m.dir, "manifests", "crds")
			if _, err := os.Stat(m.dir); err != nil {
				m.err = fmt.Errorf("finding the CRDs of %s@%s: %w", path, version, err)
			}
		}
	})
	return m.dir, m.err
}

func downloadModule(path, version string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", path+"@"+version)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+moduleToolchain)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var info struct {
		Dir   string
		Error string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("downloading %s@%s: %v: %s", path, version, runErr, stderr.Bytes())
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("downloading %s@%s: %s %s", path, version, info.Error, stderr.Bytes())
	}
	return info.Dir, nil
}
