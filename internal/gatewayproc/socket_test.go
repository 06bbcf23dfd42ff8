package gatewayproc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
)

// dialEnv makes the test binary, started by connectAs, dial the unix
// socket it names and exit: 0 connected, 3 permission denied, 4 otherwise.
const dialEnv = "GATEWAYPROC_TEST_DIAL"

// dialIfAsked is the child side of connectAs; TestMain calls it first.
func dialIfAsked() {
	path := os.Getenv(dialEnv)
	if path == "" {
		return
	}
	c, err := net.Dial("unix", path)
	switch {
	case err == nil:
		c.Close()
		os.Exit(0)
	case errors.Is(err, fs.ErrPermission):
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
}

// nobody is the uid and gid the cross-user connection attempts run as.
const nobody = 65534

// connectAs runs a copy of the test binary as uid (or as this user when uid
// is -1) that connects to the unix socket at path, and returns its exit
// code: 0 connected, 3 permission denied.
func connectAs(t *testing.T, bin string, uid int, path string) int {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), dialEnv+"="+path)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running the dial helper: %v", err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 && code != 3 {
		t.Fatalf("dial helper as uid %d exited %d: %s", uid, code, out)
	}
	return cmd.ProcessState.ExitCode()
}

// publicDir returns a new directory under os.TempDir() that every user can
// traverse (0711), unlike t.TempDir(), removed when the test ends.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gwproc-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyTestBinary copies the running test binary into dir, 0755, so that
// another user can run it.
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "dial.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestAdminSocketRefusesOtherUsers starts a real gateway process and checks
// that its admin socket is 0600 in a 0700 directory, and that a process of
// another user cannot connect to it: not through the directory, and not
// even when the directory is opened up, because of the socket's own mode.
// The positive controls (the owner connects; nobody connects once the
// socket is 0666) show the attempts could succeed.
func TestAdminSocketRefusesOtherUsers(t *testing.T) {
	pub := publicDir(t)
	gwDir := filepath.Join(pub, "gateway")
	o := options(t)
	o.StatePath = filepath.Join(gwDir, "routes.json")
	h := ensure(t, o)
	sock := h.AdminSocket()
	if sock != filepath.Join(gwDir, "admin.sock") {
		t.Fatalf("admin socket = %s, want admin.sock beside the state file", sock)
	}
	if m := mode(t, sock); m.Type() != fs.ModeSocket || m.Perm() != 0o600 {
		t.Errorf("admin socket mode = %v, want a socket with 0600", m)
	}
	if m := mode(t, gwDir); m.Perm() != 0o700 {
		t.Errorf("gateway dir mode = %v, want 0700", m)
	}
	if os.Geteuid() != 0 {
		t.Skip("connecting as another user needs root")
	}
	bin := copyTestBinary(t, pub)
	if code := connectAs(t, bin, -1, sock); code != 0 {
		t.Fatalf("the owner could not connect to the admin socket (exit %d)", code)
	}
	if code := connectAs(t, bin, nobody, sock); code != 3 {
		t.Errorf("uid %d connecting to the admin socket: exit %d, want permission denied", nobody, code)
	}
	// The directory opened up: the socket's mode alone must refuse.
	if err := os.Chmod(gwDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if code := connectAs(t, bin, nobody, sock); code != 3 {
		t.Errorf("uid %d connecting to the 0600 admin socket in a 0755 dir: exit %d, want permission denied", nobody, code)
	}
	// Control: with the socket opened up too, the same attempt connects.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if code := connectAs(t, bin, nobody, sock); code != 0 {
		t.Errorf("uid %d could not connect to a 0666 socket (exit %d): the refusals above prove nothing", nobody, code)
	}
}

// TestAdminSocketShortDir puts the state file in a directory too deep for a
// unix socket path: the socket goes to a short private directory under
// os.TempDir(), which an adopting Ensure and a restart after a crash find
// again through the record, and which Stop removes.
func TestAdminSocketShortDir(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	o := options(t)
	o.StatePath = filepath.Join(deep, "routes.json")
	o.RecordPath = filepath.Join(deep, "gateway.json")
	if p := filepath.Join(deep, "admin.sock"); len(p) <= gateway.MaxSocketPath {
		t.Fatalf("test dir %s is not too long for a socket", p)
	}
	h, err := Ensure(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			h.Stop(t.Context())
		}
	})
	sock := h.AdminSocket()
	dir := filepath.Dir(sock)
	if filepath.Dir(dir) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(dir), shortDirPrefix) {
		t.Fatalf("admin socket %s is not in a short dir under %s", sock, os.TempDir())
	}
	if m := mode(t, dir); m.Perm() != 0o700 {
		t.Errorf("short socket dir mode = %v, want 0700", m)
	}
	if m := mode(t, sock); m.Perm() != 0o600 {
		t.Errorf("admin socket mode = %v, want 0600", m)
	}
	client := remote.New(sock, "")
	if err := client.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{backend(t, "pong")}}); err != nil {
		t.Fatal(err)
	}

	adopted, err := Ensure(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if adopted.PID() != h.PID() || adopted.AdminSocket() != sock {
		t.Errorf("second Ensure: PID %d socket %s, want the adopted %d on %s", adopted.PID(), adopted.AdminSocket(), h.PID(), sock)
	}

	// A crash, then a control plane start: a new process on the same
	// short dir.
	if err := syscall.Kill(h.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGoneT(t, h.PID())
	again, err := Ensure(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	h = again
	if again.AdminSocket() != sock {
		t.Errorf("after a crash the admin socket moved from %s to %s", sock, again.AdminSocket())
	}
	if got, ok := remote.New(again.AdminSocket(), "").Route("production", "web"); !ok || got.StableVersion != "v1" {
		t.Errorf("route after the restart = %+v %v, want the saved one", got, ok)
	}

	if err := again.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("short socket dir %s still there after Stop (lstat: %v)", dir, err)
	}
}

// TestShortDirNotReusedIfForeign: a record naming a short dir that is not
// private (another user could have made it) is not reused.
func TestShortDirNotReusedIfForeign(t *testing.T) {
	foreign, err := os.MkdirTemp("", shortDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(foreign) })
	if err := os.Chmod(foreign, 0o777); err != nil {
		t.Fatal(err)
	}
	o := Options{StatePath: filepath.Join(t.TempDir(), strings.Repeat("x", 110), "routes.json")}
	got, err := adminSocket(o, &Record{Admin: filepath.Join(foreign, socketName)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(got.path)) })
	if filepath.Dir(got.path) == foreign || !got.created {
		t.Errorf("adminSocket = %+v, want a new short dir instead of the 0777 %s", got, foreign)
	}
}

func waitGoneT(t *testing.T, pid int) {
	t.Helper()
	for i := 0; !gone(pid); i++ {
		if i == 3000 {
			t.Fatalf("process %d did not exit", pid)
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 10e6}, nil)
	}
}

// TestAdoptTakesPolicy: the control plane that adopts a gateway gives it
// its backend policy, which the gateway then enforces; routes the new
// policy forbids are dropped.
func TestAdoptTakesPolicy(t *testing.T) {
	o := options(t)
	first := ensure(t, o)
	client := remote.New(first.AdminSocket(), "")
	lan := gateway.Route{Env: "production", App: "lan", StableVersion: "v1", Stable: []gateway.Backend{{Addr: "192.0.2.10:8080"}}}
	if err := client.SetRoute(lan); !errors.Is(err, gateway.ErrInvalidRoute) {
		t.Fatalf("SetRoute to a LAN backend under the default policy: %v, want ErrInvalidRoute", err)
	}

	o.Backends = gateway.BackendPolicy{Allowed: []string{"192.0.2.0/24"}}
	second := ensure(t, o)
	if second.PID() != first.PID() {
		t.Fatalf("Ensure with another policy started gateway %d, want %d adopted", second.PID(), first.PID())
	}
	if err := client.SetRoute(lan); err != nil {
		t.Fatalf("SetRoute to an allowed CIDR after adoption: %v", err)
	}
	web := gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{backend(t, "pong")}}
	if err := client.SetRoute(web); err != nil {
		t.Fatal(err)
	}

	// The next control plane's API listens where web's backend is.
	o.Backends = gateway.BackendPolicy{Reserved: []string{web.Stable[0].Addr}}
	third := ensure(t, o)
	if third.PID() != first.PID() {
		t.Fatalf("Ensure with another policy started gateway %d, want %d adopted", third.PID(), first.PID())
	}
	if rs := client.Routes(); len(rs) != 0 {
		t.Errorf("routes after a narrower policy = %+v, want none", rs)
	}
	if err := client.SetRoute(web); !errors.Is(err, gateway.ErrInvalidRoute) || !strings.Contains(err.Error(), "loop") {
		t.Errorf("SetRoute to the reserved address: %v, want ErrInvalidRoute saying it loops", err)
	}

	// A restart after a crash keeps the policy: it is on the command line.
	gaps := watch(t, third)
	if err := syscall.Kill(third.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-gaps
	if err := client.SetRoute(web); !errors.Is(err, gateway.ErrInvalidRoute) {
		t.Errorf("SetRoute to the reserved address after a restart: %v, want ErrInvalidRoute", err)
	}
}

// TestMetricsListener: the metrics port serves the gateway's series and
// nothing of the admin API.
func TestMetricsListener(t *testing.T) {
	o := options(t)
	h := ensure(t, o)
	client := remote.New(h.AdminSocket(), "")
	if err := client.SetRoute(gateway.Route{Env: "production", App: "web", StableVersion: "v1", Stable: []gateway.Backend{backend(t, "pong")}}); err != nil {
		t.Fatal(err)
	}
	get(t, h.ListenAddr(), "web.localhost")
	resp, err := http.Get(h.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `runway_gateway_requests_total{app="web",code="200",env="production",version="v1"} 1`
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Errorf("GET %s = %d, want 200 with %s:\n%s", h.MetricsURL(), resp.StatusCode, want, body)
	}
	base := strings.TrimSuffix(h.MetricsURL(), "/metrics")
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/routes"}, {http.MethodGet, "/healthz"}, {http.MethodPut, "/routes/production/web"},
		{http.MethodDelete, "/envs/production"}, {http.MethodPut, "/policy"}, {http.MethodPost, "/metrics"},
	} {
		r, _ := http.NewRequest(req.method, base+req.path, strings.NewReader(`{}`))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Errorf("%s %s on the metrics port = %d, want it refused", req.method, req.path, resp.StatusCode)
		}
	}
	if rs := client.Routes(); len(rs) != 1 {
		t.Errorf("routes after requests to the metrics port = %+v, want the one set", rs)
	}
}
