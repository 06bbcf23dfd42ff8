package nodeagent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	"github.com/runway-cd/runway/internal/image"
)

// commandLine is the argv Kubernetes runs for c: command (else the
// image's entrypoint) then args (else, when command is not given, the
// image's cmd), with $(VAR) expanded against the container's env.
func commandLine(c *corev1.Container, cfg image.Config, env *environ) []string {
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(argv, expandAll(c.Command, env)...)
		argv = append(argv, expandAll(c.Args, env)...)
	case len(c.Args) > 0:
		argv = append(argv, cfg.Entrypoint...)
		argv = append(argv, expandAll(c.Args, env)...)
	default:
		argv = append(argv, cfg.Entrypoint...)
		argv = append(argv, cfg.Cmd...)
	}
	return argv
}

func expandAll(ss []string, env *environ) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = expand(s, env.lookup)
	}
	return out
}

// inRoot is the host path of the container path p.
func inRoot(rootfs, p string) string {
	return filepath.Join(rootfs, filepath.Clean("/"+p))
}

// workingDir is the host path of c's working directory: its workingDir,
// else the image's, else the root.
func workingDir(rootfs string, c *corev1.Container, cfg image.Config) string {
	dir := c.WorkingDir
	if dir == "" {
		dir = cfg.WorkingDir
	}
	return inRoot(rootfs, dir)
}

// processEnv is the process's whole environment: the image's variables
// but PATH (its PATH names the image's directories), the container's
// over them, and PATH (the container's, else the agent's own).
func processEnv(imageEnv []string, env *environ, hostPath string) []string {
	all := &environ{}
	for _, kv := range imageEnv {
		k, v, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "" {
			all.set(k, v)
		}
	}
	for _, n := range env.names {
		all.set(n, env.values[n])
	}
	if _, ok := all.lookup("PATH"); !ok {
		all.set("PATH", hostPath)
	}
	return all.list()
}

var errNoCommand = errors.New("no command specified")

// resolveProgram is the host path to execute for argv0: an absolute path
// inside the rootfs, a relative one against the working directory, a
// bare name in the image's PATH directories inside the rootfs, then the
// host's PATH.
func resolveProgram(argv0, rootfs, cwd string, imageEnv []string) (string, error) {
	switch {
	case argv0 == "":
		return "", errNoCommand
	case filepath.IsAbs(argv0):
		return executable(inRoot(rootfs, argv0))
	case strings.Contains(argv0, "/"):
		return executable(filepath.Join(cwd, argv0))
	}
	imagePath := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range imageEnv {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			imagePath = v
		}
	}
	for _, dir := range filepath.SplitList(imagePath) {
		if p, err := executable(filepath.Join(inRoot(rootfs, dir), argv0)); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(argv0)
	if err != nil {
		return "", fmt.Errorf("exec: %q: executable file not found in $PATH", argv0)
	}
	return p, nil
}

func executable(p string) (string, error) {
	info, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("exec: %w", err)
	}
	if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("exec: %s: permission denied", p)
	}
	return p, nil
}

// exitCode is a finished process's status as a container runtime
// reports it: the code, or 128+signal when a signal killed it.
func exitCode(ps *os.ProcessState) int32 {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ps.ExitCode())
}

// killGroup signals the process group pgid, ignoring one that is gone.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// nobody is the unprivileged user pods run as when the agent is root.
const nobody = 65534

// reachableByOthers reports whether every directory from dir up to the
// root can be traversed by a user who neither owns it nor is in its
// group.
func reachableByOthers(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil || info.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
