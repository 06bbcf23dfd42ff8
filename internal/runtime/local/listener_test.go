package local

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/sandbox"
	"github.com/runway-cd/runway/internal/supervisor"
)

// TestOwnsPort checks the listener check against sockets of this test
// process, so it runs without root: its uid is the holder's.
func TestOwnsPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	any6, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer any6.Close()
	me := uint32(os.Geteuid())
	other := me + 1
	closed := freeTestPort(t)
	tests := []struct {
		name   string
		addr   string
		cred   *syscall.Credential
		assert func(*testing.T, error)
	}{
		{name: "held by the replica's uid", addr: l.Addr().String(), cred: &syscall.Credential{Uid: me}, assert: wantNoError},
		{name: "held on [::] by the replica's uid", addr: net.JoinHostPort("127.0.0.1", port(any6)), cred: &syscall.Credential{Uid: me}, assert: wantNoError},
		{name: "held by another uid", addr: l.Addr().String(), cred: &syscall.Credential{Uid: other}, assert: wantForeign(me, other)},
		{name: "held on [::] by another uid", addr: net.JoinHostPort("127.0.0.1", port(any6)), cred: &syscall.Credential{Uid: other}, assert: wantForeign(me, other)},
		{name: "sandbox disabled: not checked", addr: l.Addr().String(), cred: nil, assert: wantNoError},
		{name: "nobody listens", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(closed)), cred: &syscall.Credential{Uid: me}, assert: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "no socket listens on it") {
				t.Fatalf("err = %v, want no socket listens", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.assert(t, ownsPort(tt.addr, 2, "web", "v1", tt.cred))
		})
	}
}

func wantNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantForeign(holder, want uint32) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var fe *foreignListenerError
		if !errors.As(err, &fe) || fe.holder != holder || fe.want != want {
			t.Fatalf("err = %v, want the port held by uid %d, not %d", err, holder, want)
		}
	}
}

func port(l net.Listener) string { return strconv.Itoa(l.Addr().(*net.TCPAddr).Port) }

func freeTestPort(t *testing.T) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sandboxedWorld is a runtime on a sandbox, with the test server copied
// where the sandbox uids can run it.
type sandboxedWorld struct {
	dir, app string
	sb       *sandbox.Sandbox
	rt       *Runtime
}

func newSandboxedWorld(t *testing.T, base uint32) *sandboxedWorld {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: replicas run as sandbox uids only when Runway is root")
	}
	root := t.TempDir()
	w := &sandboxedWorld{dir: filepath.Join(root, "envs"), app: filepath.Join(root, "app")}
	var err error
	w.sb, err = sandbox.New(sandbox.Options{Base: base, Count: 10, StateFile: filepath.Join(root, "uids.json"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(w.app, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(appDir, "server"), filepath.Join(w.app, "server"), 0o755)
	if err := w.sb.Traversable(filepath.Join(w.app, "server")); err != nil {
		t.Fatal(err)
	}
	w.rt = w.runtime(t)
	return w
}

// runtime returns a runtime on the world's dir, destroyed at the end.
func (w *sandboxedWorld) runtime(t *testing.T) *Runtime {
	t.Helper()
	rt, err := New(Options{Dir: w.dir, SecretsDir: secretsFor(w.dir), Sandbox: w.sb, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), AdoptHealthTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, rt)
	return rt
}

func (w *sandboxedWorld) uid(t *testing.T, env string) uint32 {
	t.Helper()
	uid, err := w.sb.UID(env)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// squat starts the test server as uid on port, the way a staging process
// would take a production replica's port: it answers the health path. It
// returns a function that kills it.
func (w *sandboxedWorld) squat(t *testing.T, uid uint32, port int) (kill func()) {
	t.Helper()
	cmd := exec.Command(filepath.Join(w.app, "server"))
	cmd.Dir = w.app
	cmd.Env = []string{"PORT=" + strconv.Itoa(port)}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Cleanup(kill)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); !listens(addr); {
		if time.Now().After(deadline) {
			t.Fatalf("the squatter never listened on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return kill
}

// TestStartRefusesPortHeldByAnotherUID is the finding's attack: a staging
// process binds the port the runtime chose for a production replica
// before the replica does, and answers the health check. Start tries
// other ports; when every port it picks is taken it fails, nothing of the
// replica is left, and a retry once the port is free succeeds, as does a
// start on a port nobody took.
func TestStartRefusesPortHeldByAnotherUID(t *testing.T) {
	w := newSandboxedWorld(t, 1730000)
	ctx := t.Context()
	prodUID, stagingUID := w.uid(t, "production"), w.uid(t, "staging")
	taken := freeTestPort(t)
	kill := w.squat(t, stagingUID, taken)
	w.rt.pickPort = func() (int, error) { return taken, nil }
	rs := testReplicaSet("production", "v1", 1)
	rs.Dir = w.app

	_, err := w.rt.Start(ctx, rs)
	want := fmt.Sprintf("port %d of web v1 replica 0 is held by uid %d, not the replica's uid %d: refusing to route to it", taken, stagingUID, prodUID)
	var fe *foreignListenerError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start with the port taken = %v, want an error with %q", err, want)
	}
	if got := w.rt.own.List("production"); len(got) != 0 {
		t.Fatalf("workloads after the refused start = %+v; want none", got)
	}
	if pids := processesOf(t, prodUID); len(pids) != 0 {
		t.Fatalf("processes of the production uid after the refused start: %v", pids)
	}

	kill()
	reps, err := w.rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("retry with the port free: %v", err)
	}
	if got := get(t, "http://"+reps[0].Addr+"/whoami"); !strings.Contains(got, "production web v1") {
		t.Fatalf("/whoami = %q", got)
	}

	w.rt.pickPort = freePort
	rs.Version = "v2"
	if _, err := w.rt.Start(ctx, rs); err != nil {
		t.Fatalf("start on a port nobody took: %v", err)
	}
}

// TestStartRetriesPortTakenByAnotherUID: when the first port picked is a
// staging process's (which answers the health check), Start declares the
// replica again on another port, and the replica serves there as
// production's uid.
func TestStartRetriesPortTakenByAnotherUID(t *testing.T) {
	w := newSandboxedWorld(t, 1730040)
	ctx := t.Context()
	prodUID, stagingUID := w.uid(t, "production"), w.uid(t, "staging")
	taken := freeTestPort(t)
	w.squat(t, stagingUID, taken)
	picks := 0
	w.rt.pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return freePort()
	}
	rs := testReplicaSet("production", "v1", 1)
	rs.Dir = w.app
	reps, err := w.rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if picks != 2 || reps[0].Addr == net.JoinHostPort("127.0.0.1", strconv.Itoa(taken)) {
		t.Fatalf("Start = %+v after %d port picks, want a second port", reps, picks)
	}
	if uid := processUID(t, reps[0].PID); uid != prodUID {
		t.Fatalf("the replica runs as uid %d, want production's %d", uid, prodUID)
	}
	if got := get(t, "http://"+reps[0].Addr+"/whoami"); !strings.Contains(got, "production web v1") {
		t.Fatalf("/whoami = %q", got)
	}
}

// TestAdoptStopsReplicaWhosePortAnotherUIDHolds: a replica the supervisor
// runs and reports ready, but whose address a listener of another uid
// holds (the supervisor's probe passes on whoever answers), is not adopted
// after a restart: it is removed.
func TestAdoptStopsReplicaWhosePortAnotherUIDHolds(t *testing.T) {
	w := newSandboxedWorld(t, 1730020)
	ctx := t.Context()
	prodUID, stagingUID := w.uid(t, "production"), w.uid(t, "staging")
	rs := testReplicaSet("production", "v1", 1)
	rs.Dir = w.app
	command, err := resolveCommand(rs.Dir, rs.Command[0])
	if err != nil {
		t.Fatal(err)
	}
	rs.Command[0] = command
	sb, err := w.rt.prepareEnv(w.rt.env("production"))
	if err != nil {
		t.Fatal(err)
	}
	// The replica listens on its own port, but its workload names a port
	// a staging process holds: what a replica that lost its port while
	// the supervisor restarted it would look like.
	taken := freeTestPort(t)
	w.squat(t, stagingUID, taken)
	sp := replicaSpec(rs, 0, sb, freeTestPort(t), filepath.Join(w.dir, "production", "logs", "web-v1-0.log"))
	sp.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(taken))
	if _, err := w.rt.own.Apply(ctx, sp); err != nil {
		t.Fatal(err)
	}
	// The supervisor never makes it ready (the port is not its uid's),
	// but it runs.
	var st supervisor.Status
	for i := 0; st.PID == 0; i++ {
		if i == 1000 {
			t.Fatalf("the replica never ran: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
		st, _ = w.rt.own.Get(sp.ID)
	}
	time.Sleep(200 * time.Millisecond) // probes answered by the squatter meanwhile
	if now, _ := w.rt.own.Get(sp.ID); now.Ready {
		t.Fatalf("the supervisor made a replica whose port another uid holds ready: %+v", now)
	}
	w.rt.Detach()

	rt := w.runtime(t)
	rep, err := rt.Adopt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("is held by uid %d, not the replica's uid %d: refusing to route to it; stopped", stagingUID, prodUID)
	if len(rep.Adopted) != 0 || len(rep.Dropped) != 1 || !strings.Contains(rep.Dropped[0], want) {
		t.Fatalf("Adopt = %+v, want the replica dropped with %q", rep, want)
	}
	if !exited(st.PID) {
		t.Fatalf("replica pid %d still runs", st.PID)
	}
	if got := mustVersions(t, rt, "production", "web"); len(got) != 0 {
		t.Fatalf("Versions = %v, want none", got)
	}
}

// processesOf lists the running processes whose real uid is uid.
func processesOf(t *testing.T, uid uint32) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || exited(pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(rest); len(f) > 0 && f[0] == strconv.FormatUint(uint64(uid), 10) {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}
