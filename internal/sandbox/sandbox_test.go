package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sandbox uids are only handed out when Runway runs as root")
	}
}

func newSandbox(t *testing.T, state string, count uint32) *Sandbox {
	t.Helper()
	s, err := New(Options{Base: 1600000, Count: count, StateFile: state, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestAllocation(t *testing.T) {
	requireRoot(t)
	state := filepath.Join(t.TempDir(), "uids.json")
	// A fresh table starts at a random uid; this one at the first.
	if err := os.WriteFile(state, []byte(`{"next": 1600001}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t, state, 4) // 1600000 is never handed out; 1600001..1600003 are
	steps := []struct {
		name   string
		act    func() (uint32, error)
		want   uint32
		errIs  error
		assert func(t *testing.T)
	}{
		{name: "first environment", act: func() (uint32, error) { return s.UID("production") }, want: 1600001},
		{name: "second environment", act: func() (uint32, error) { return s.UID("v1") }, want: 1600002},
		{name: "the same environment again", act: func() (uint32, error) { return s.UID("production") }, want: 1600001},
		{name: "allocation survives a restart", act: func() (uint32, error) { return newSandbox(t, state, 4).UID("v1") }, want: 1600002,
			assert: func(t *testing.T) {
				fi, err := os.Stat(state)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("state file %v, %v: want 0600", fi.Mode(), err)
				}
			}},
		{name: "third environment", act: func() (uint32, error) { return s.UID("v2") }, want: 1600003},
		{name: "range exhausted", act: func() (uint32, error) { return s.UID("v3") }, errIs: ErrExhausted},
		{name: "a released uid is reused once the range wraps", act: func() (uint32, error) {
			if err := s.Release("production"); err != nil {
				return 0, err
			}
			return s.UID("v3")
		}, want: 1600001},
		{name: "released after restart too", act: func() (uint32, error) {
			if err := s.Release("v1"); err != nil {
				return 0, err
			}
			r := newSandbox(t, state, 4)
			if slices.Contains(r.Allocated(), "v1") {
				t.Errorf("released v1 still allocated after restart: %v", r.Allocated())
			}
			return r.UID("v4")
		}, want: 1600002},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := st.act()
			if st.errIs != nil {
				if !errors.Is(err, st.errIs) {
					t.Fatalf("err = %v, want %v", err, st.errIs)
				}
				return
			}
			if err != nil || got != st.want {
				t.Fatalf("uid = %d, %v; want %d", got, err, st.want)
			}
			if st.assert != nil {
				st.assert(t)
			}
		})
	}
}

// TestBuildUIDs checks that each app's builds get a uid of their own from
// the environments' range, kept when environments' uids are released.
func TestBuildUIDs(t *testing.T) {
	requireRoot(t)
	state := filepath.Join(t.TempDir(), "uids.json")
	s := newSandbox(t, state, 10)
	uid := func(s *Sandbox, key string) uint32 {
		t.Helper()
		u, err := s.UID(key)
		if err != nil {
			t.Fatalf("UID(%s): %v", key, err)
		}
		return u
	}
	web, api, env := uid(s, BuildKey("web")), uid(s, BuildKey("api")), uid(s, "web")
	for name, u := range map[string]uint32{"web's builds": web, "api's builds": api, "environment web": env} {
		if u <= 1600000 || u >= 1600010 {
			t.Errorf("%s: uid %d, want one of 1600001..1600009 (the base is never handed out)", name, u)
		}
	}
	if web == api || web == env || api == env {
		t.Fatalf("uids web's builds %d, api's builds %d, environment web %d: want all different", web, api, env)
	}
	if got := s.Allocated(); !slices.Equal(got, []string{"web"}) {
		t.Errorf("Allocated = %v, want only the environment [web]", got)
	}
	// Teardown of everything Allocated lists, as the runtime does, and a
	// Release of a build key: build uids stay.
	for _, k := range append(s.Allocated(), BuildKey("web")) {
		if err := s.Release(k); err != nil {
			t.Fatal(err)
		}
	}
	r := newSandbox(t, state, 10)
	if got := uid(r, BuildKey("web")); got != web {
		t.Errorf("web's builds after release and restart: uid %d, want %d kept", got, web)
	}
	if got := uid(r, BuildKey("api")); got != api {
		t.Errorf("api's builds after restart: uid %d, want %d kept", got, api)
	}
	if slices.Contains(r.Allocated(), "web") {
		t.Errorf("environment web still allocated after release: %v", r.Allocated())
	}
}

func TestCredentialAndChown(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	s := newSandbox(t, filepath.Join(dir, "uids.json"), 10)
	cred, err := s.Credential("staging")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Uid <= 1600000 || cred.Uid >= 1600010 || cred.Gid != cred.Uid || cred.Groups == nil || len(cred.Groups) != 0 {
		t.Fatalf("credential = %+v, want uid=gid in 1600001..1600009 and an empty (not inherited) group list", cred)
	}
	id := strconv.FormatUint(uint64(cred.Uid), 10)
	home := filepath.Join(dir, "envs", "staging", "home")
	if err := s.Dir(home, 0o700, "staging"); err != nil {
		t.Fatal(err)
	}
	if err := s.Traversable(home); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		uid  uint32
		perm os.FileMode
	}{{filepath.Join(dir, "envs"), 0, 0o711}, {filepath.Join(dir, "envs", "staging"), 0, 0o711}, {home, cred.Uid, 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != c.uid || fi.Mode().Perm() != c.perm {
			t.Errorf("%s: uid %d mode %#o, want uid %d mode %#o", c.path, st.Uid, fi.Mode().Perm(), c.uid, c.perm)
		}
	}
	// The process really runs as the uid, with no group of root's, and can
	// write its home and nothing of root's.
	cmd := exec.Command("sh", "-c", `id -u; id -g; id -G; touch "$HOME/ok"; touch "$1/denied" 2>&1 || true`, "sh", dir)
	cmd.Env = s.Env(home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || lines[0] != id || lines[1] != id || lines[2] != id || !strings.Contains(lines[3], "Permission denied") {
		t.Fatalf("id and writes as the sandbox uid:\n%s\nwant uid, gid and groups %s, and the write to a root dir refused", out, id)
	}
	if _, err := os.Stat(filepath.Join(home, "ok")); err != nil {
		t.Errorf("the process could not write its home: %v", err)
	}
}

func TestKillAll(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t, filepath.Join(t.TempDir(), "uids.json"), 10)
	cred, err := s.Credential("doomed")
	if err != nil {
		t.Fatal(err)
	}
	// A daemon that leaves the session and process group of its parent.
	cmd := exec.Command("setsid", "sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(5 * time.Second)
	for len(Processes(cred.Uid)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(Processes(cred.Uid)) == 0 {
		t.Fatal("the daemon never showed up as the sandbox uid")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.KillAll(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process still runs after KillAll")
	}
	if left := Processes(cred.Uid); len(left) > 0 {
		t.Fatalf("processes of uid %d left: %v", cred.Uid, left)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "a Runway secret named for app code", opts: Options{Env: []string{"HTTP_PROXY", "RUNWAY_WEBHOOK_SECRET"}}, wantErr: "RUNWAY_WEBHOOK_SECRET"},
		{name: "a name with a value", opts: Options{Env: []string{"A=b"}}, wantErr: "A=b"},
		{name: "a var without a value", opts: Options{Vars: []string{"GOPROXY"}}, wantErr: "KEY=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Disabled, tt.opts.Logger = true, discard
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	var logs strings.Builder
	s, err := New(Options{Disabled: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for name, sb := range map[string]*Sandbox{"disabled": s, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			cred, err := sb.Credential("production")
			if err != nil || cred != nil {
				t.Fatalf("Credential = %+v, %v; want nil (the current user)", cred, err)
			}
			if err := sb.Chown(t.TempDir(), "production"); err != nil {
				t.Fatal(err)
			}
			if sb.Enabled() {
				t.Fatal("Enabled")
			}
		})
	}
	if !strings.Contains(logs.String(), "sandbox disabled") || strings.Count(logs.String(), "\n") != 1 {
		t.Fatalf("log = %q, want one warning that app code runs as the current user", logs.String())
	}
}

func TestAllocationSkipsBusyUID(t *testing.T) {
	requireRoot(t)
	state := filepath.Join(t.TempDir(), "uids.json")
	if err := os.WriteFile(state, []byte(`{"next": 1610001}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Something runs as 1610001 that this table does not know: another
	// Runway's environment on the same range.
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1610001, Gid: 1610001, Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s, err := New(Options{Base: 1610000, Count: 10, StateFile: state, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if uid, err := s.UID("staging"); err != nil || uid != 1610002 {
		t.Fatalf("UID = %d, %v; want 1610002, skipping the busy 1610001", uid, err)
	}
}
