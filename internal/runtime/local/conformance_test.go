package local

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/runtimetest"
	"github.com/runway-cd/runway/internal/sandbox"
	"github.com/runway-cd/runway/internal/supervisor"
)

// conformanceProgram is the suite's test program, built once per test
// binary into TestMain's dir, which sandbox uids may then enter.
var conformanceProgram = sync.OnceValues(func() (runtimetest.Program, error) {
	if err := os.Chmod(appDir, 0o755); err != nil {
		return runtimetest.Program{}, err
	}
	return runtimetest.BuildProgram(appDir)
})

// conformanceUIDBase is the sandbox uid range of TestConformance, apart
// from the other tests' and the benchmarks'.
const conformanceUIDBase = 1750000

// TestConformance runs the runtime conformance suite against the local
// runtime: with its in-process supervisor, as Runway runs without a data
// plane, unsandboxed and (as root) with every environment's processes
// running as its own sandbox uid; and over a supervisor it reaches on a
// unix socket, as Runway runs with its data plane, whose outage the
// suite then checks is never read as "nothing runs".
func TestConformance(t *testing.T) {
	prog, err := conformanceProgram()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*conformanceVariant{
		{name: "Unsandboxed"},
		{name: "Sandboxed", sandboxed: true},
		{name: "OverSupervisorClient", client: true},
	} {
		t.Run(v.name, func(t *testing.T) {
			if v.sandboxed && os.Geteuid() != 0 {
				t.Skip("sandbox uids need root")
			}
			h := runtimetest.Harness{
				New:          v.newRuntime,
				Program:      prog,
				Unrelated:    startStranger,
				ProcessAlive: func(pid int) bool { return !exited(pid) },
				SkipPostgres: postgresMissing(),
			}
			if v.client {
				h.Outage = v.outage
			}
			runtimetest.Run(t, h)
		})
	}
}

// conformanceVariant is one configuration of the local runtime the suite
// runs against.
type conformanceVariant struct {
	name      string
	sandboxed bool
	client    bool // over a supervisor's admin socket, not in-process

	mu     sync.Mutex
	planes map[runtime.Runtime]*socketSupervisor
}

// socketSupervisor is a supervisor served on a unix socket, as the data
// plane serves its own.
type socketSupervisor struct {
	sup  *supervisor.Supervisor
	sock string
	srv  *http.Server
}

// serve serves the supervisor on its socket.
func (p *socketSupervisor) serve(t *testing.T) {
	ln, err := net.Listen("unix", p.sock)
	if err != nil {
		t.Fatalf("listening on the supervisor's socket: %v", err)
	}
	p.srv = &http.Server{Handler: supervisor.Handler(p.sup)}
	go func() { _ = p.srv.Serve(ln) }()
}

// newSocketSupervisor starts a supervisor on a socket of its own; it stops
// everything it runs when t ends, after what is registered later.
func newSocketSupervisor(t *testing.T, logger *slog.Logger) *socketSupervisor {
	// A short path: a unix socket's is at most 107 bytes.
	sockDir, err := os.MkdirTemp("", "rw-conf-")
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(t.Context(), supervisor.Options{StatePath: filepath.Join(sockDir, "supervisor.json"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	p := &socketSupervisor{sup: sup, sock: filepath.Join(sockDir, "admin.sock")}
	p.serve(t)
	t.Cleanup(func() {
		_ = p.srv.Close()
		if got := sup.List(""); len(got) != 0 {
			t.Errorf("the supervisor still runs %+v after the runtime destroyed everything", got)
		}
		if err := sup.StopAll(context.Background()); err != nil {
			t.Errorf("stopping the supervisor: %v", err)
		}
		sup.Close()
		_ = os.RemoveAll(sockDir)
	})
	return p
}

// outage cuts rt off from its supervisor, which keeps running what it
// runs, as when the data plane restarts; restore serves it again.
func (v *conformanceVariant) outage(t *testing.T, rt runtime.Runtime) (restore func()) {
	v.mu.Lock()
	p := v.planes[rt]
	v.mu.Unlock()
	if p == nil {
		t.Fatal("outage of a runtime this harness did not make")
	}
	if err := p.srv.Close(); err != nil {
		t.Fatalf("closing the supervisor's socket: %v", err)
	}
	return func() { p.serve(t) }
}

// newRuntime is a fresh runtime whose dirs are alone in a temporary dir.
// When the test ends it destroys what is left and checks that nothing was
// made beside its dirs (a name that escaped them) and nothing is left in
// them but the supervisor's state (and the sandbox's uid table).
func (v *conformanceVariant) newRuntime(t *testing.T) runtime.Runtime {
	base := t.TempDir()
	dir := filepath.Join(base, "envs")
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	opts := Options{Dir: dir, SecretsDir: filepath.Join(base, "secrets"), Logger: logger,
		// One cluster template for every variant's server: initdb once.
		Postgres: postgres.Config{TemplateDir: filepath.Join(appDir, "postgres-templates")}}
	var plane *socketSupervisor
	if v.client {
		plane = newSocketSupervisor(t, logger)
		opts.Supervisor = supervisor.NewClient(plane.sock)
	}
	if v.sandboxed {
		sb, err := sandbox.New(sandbox.Options{Base: conformanceUIDBase, Count: 50, StateFile: filepath.Join(base, "uids.json"), Logger: logger})
		if err != nil {
			t.Fatalf("sandbox: %v", err)
		}
		if err := sb.Traversable(base); err != nil {
			t.Fatal(err)
		}
		opts.Sandbox = sb
	}
	rt, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if plane != nil {
		v.mu.Lock()
		if v.planes == nil {
			v.planes = map[runtime.Runtime]*socketSupervisor{}
		}
		v.planes[rt] = plane
		v.mu.Unlock()
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, env := range rt.Envs() {
			if err := rt.Destroy(ctx, env); err != nil {
				t.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		if err := rt.Close(ctx); err != nil {
			t.Errorf("cleanup Close: %v", err)
		}
		got := slices.DeleteFunc(dirNames(t, base), func(n string) bool { return v.sandboxed && n == "uids.json" })
		if want := []string{"envs", "secrets"}; !slices.Equal(got, want) {
			t.Errorf("beside the runtime's dirs: %v, want only %v", got, want)
		}
		left := dirNames(t, dir)
		if want := []string{supervisorStateFile}; v.client && len(left) != 0 || !v.client && !slices.Equal(left, want) {
			t.Errorf("left in the runtime dir after destroying everything: %v", left)
		}
		if got := opts.Sandbox.Allocated(); len(got) != 0 {
			t.Errorf("sandbox uids still allocated after destroying everything: %v", got)
		}
		v.mu.Lock()
		delete(v.planes, rt)
		v.mu.Unlock()
	})
	return rt
}

// dirNames lists dir's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("listing %s: %v", dir, err)
		return nil
	}
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	return names
}

// startStranger starts a process the runtime did not start that looks
// like one of env's replicas (RUNWAY_ENV, RUNWAY_APP, the runtime marker
// naming another runtime's dir), in its own process group.
func startStranger(t *testing.T, env string) (alive func() bool) {
	cmd := exec.Command("sleep", "300")
	cmd.Env = append(os.Environ(), "RUNWAY_ENV="+env, "RUNWAY_APP=web", "RUNWAY_VERSION=v1",
		runtimeDirVar+"="+filepath.Join(t.TempDir(), "envs"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting an unrelated process: %v", err)
	}
	pid := cmd.Process.Pid
	st, err := procfs.Read(pid)
	if err != nil {
		t.Fatalf("reading the unrelated process: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return func() bool { return procfs.Running(pid, st.StartTime) }
}

// postgresMissing says why the database tests cannot run, "" if they can.
func postgresMissing() string {
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		return "PostgreSQL binaries missing: pg_config --bindir: " + err.Error()
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(out)), "postgres")); err != nil {
		return "PostgreSQL binaries missing: " + err.Error()
	}
	return ""
}
