package supervisor

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/procfs"
)

// TestRestartedSupervisorAdoptsAndRestarts: after Close, a new supervisor
// on the same state file adopts the process that still runs (same pid)
// and restarts the one that died meanwhile; an adopted process that dies
// later is restarted too.
func TestRestartedSupervisorAdoptsAndRestarts(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	s1 := newSupervisor(t, Options{StatePath: state})
	alive, dead := servingSpec(t, "env/alive"), servingSpec(t, "env/dead")
	for _, sp := range []Spec{alive, dead} {
		if _, err := s1.Apply(t.Context(), sp); err != nil {
			t.Fatal(err)
		}
	}
	a1, d1 := waitReady(t, s1, alive.ID), waitReady(t, s1, dead.ID)
	s1.Close()
	if !procfs.Running(a1.PID, a1.StartTime) || !procfs.Running(d1.PID, d1.StartTime) {
		t.Fatal("Close stopped a process")
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v", fi, err)
	}
	if err := syscall.Kill(d1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitGone(t, d1.PID, d1.StartTime)

	s2 := newSupervisor(t, Options{StatePath: state})
	a2 := waitReady(t, s2, alive.ID)
	if a2.PID != a1.PID || a2.Restarts != 0 {
		t.Errorf("running process not adopted: %+v, was %+v", a2, a1)
	}
	d2 := waitReady(t, s2, dead.ID)
	if d2.PID == d1.PID || d2.Restarts != 1 || d2.LastExit == "" {
		t.Errorf("dead process not restarted: %+v, was %+v", d2, d1)
	}

	if err := syscall.Kill(a1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a3 := await(t, s2, alive.ID, "adopted process restarted", func(st Status) bool { return st.Restarts >= 1 && st.Ready })
	if a3.Restarts != 1 {
		t.Errorf("restarts = %d, want 1; log:\n%s", a3.Restarts, logTail(alive.LogPath))
	}
	if a3.PID == a1.PID || a3.Addr != alive.Addr {
		t.Errorf("after the adopted process died: %+v\n%s", a3, logTail(alive.LogPath))
	}
}

// TestReusedPIDIsNeverSignalled: a recorded pid that now belongs to
// another process (another start time) is not adopted and not signalled.
func TestReusedPIDIsNeverSignalled(t *testing.T) {
	stranger := exec.Command("/bin/sleep", "300")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stranger.Process.Kill(); _ = stranger.Wait() })
	st, err := procfs.Read(stranger.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	sp := servingSpec(t, "env/reused")
	state := filepath.Join(t.TempDir(), "state.json")
	writeState(t, state, stateFile{Version: stateVersion, Workloads: []stateRecord{
		{Spec: sp, PID: st.PID, StartTime: st.StartTime + 1, Started: true},
	}})
	s := newSupervisor(t, Options{StatePath: state})
	got := waitReady(t, s, sp.ID)
	if got.PID == st.PID {
		t.Fatalf("adopted a stranger: %+v", got)
	}
	stopAll(t, s)
	if !procfs.Running(st.PID, st.StartTime) {
		t.Fatal("the stranger with the recorded pid was signalled")
	}
}

func TestMalformedStateIsRefused(t *testing.T) {
	valid := helperSpec(t, "env/x")
	tests := []struct {
		name    string
		content string
		wantErr string
	}{
		{name: "not json", content: "{not json", wantErr: "parsing"},
		{name: "unknown version", content: `{"version": 9, "workloads": []}`, wantErr: "version 9"},
		{name: "unknown field", content: `{"version": 1, "workloads": [], "extra": 1}`, wantErr: "unknown field"},
		{name: "invalid spec", content: `{"version": 1, "workloads": [{"spec": {"id": "x", "command": ["sh"], "logPath": "/tmp/l"}}]}`, wantErr: "command[0]"},
		{name: "duplicate", content: mustJSON(t, stateFile{Version: 1, Workloads: []stateRecord{{Spec: valid}, {Spec: valid}}}), wantErr: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := New(t.Context(), Options{StatePath: path})
			if err == nil {
				s.Close()
				t.Fatal("New accepted a malformed state file")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("New = %v, want an error naming %s and %q", err, path, tt.wantErr)
			}
		})
	}
	t.Run("absent", func(t *testing.T) {
		s := newSupervisor(t, Options{StatePath: filepath.Join(t.TempDir(), "state.json")})
		if got := s.List(""); len(got) != 0 {
			t.Errorf("List = %+v", got)
		}
	})
}

func writeState(t *testing.T, path string, f stateFile) {
	t.Helper()
	if err := os.WriteFile(path, []byte(mustJSON(t, f)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version": 1, "workloads": [{"spec": {"id": "a/b", "command": ["/bin/true"], "logPath": "/tmp/l"}, "pid": 3}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := parseState(b)
		if err != nil {
			return
		}
		for _, r := range sf.Workloads {
			if err := Validate(r.Spec); err != nil {
				t.Fatalf("parseState accepted an invalid spec: %v", err)
			}
		}
	})
}

// killedWith runs a workload under a supervisor that then goes away
// (Close: what a kill leaves) with its state file's record of the
// workload changed by edit, as a kill at some other moment would have left
// it. It returns the state file, the spec and the process's status.
func killedWith(t *testing.T, id string, edit func(*stateRecord)) (string, Spec, Status) {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state.json")
	s1 := newSupervisor(t, Options{StatePath: state})
	sp := servingSpec(t, id)
	if _, err := s1.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	st := waitReady(t, s1, sp.ID)
	s1.Close()
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil || len(f.Workloads) != 1 {
		t.Fatalf("state file: %v, %s", err, b)
	}
	edit(&f.Workloads[0])
	if b, err = json.Marshal(f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return state, sp, st
}

// TestInterruptedRemovalIsFinished: a supervisor killed in the middle of a
// Remove (the state file says removing, the process still runs) is
// followed by one that finishes the removal: the process is killed and
// the workload forgotten, never restarted.
func TestInterruptedRemovalIsFinished(t *testing.T) {
	// What Remove records before it stops anything.
	state, sp, st := killedWith(t, "env/removed", func(r *stateRecord) { r.Removing = true })

	s2 := newSupervisor(t, Options{StatePath: state})
	awaitGone(t, st.PID, st.StartTime)
	if got := s2.List(""); len(got) != 0 {
		t.Fatalf("the workload whose removal was interrupted is still supervised: %+v", got)
	}
	if b, _ := os.ReadFile(state); strings.Contains(string(b), sp.ID) {
		t.Fatalf("the state file still names it:\n%s", b)
	}
}

// TestUnrecordedStartIsFound: a supervisor killed after it started a
// process but before it recorded the pid (the state file has the run's
// nonce, no pid) is followed by one that finds that process by its nonce
// and adopts it, instead of starting a twin beside it.
func TestUnrecordedStartIsFound(t *testing.T) {
	state, sp, st := killedWith(t, "env/unrecorded", func(r *stateRecord) {
		if r.Run == "" {
			t.Fatal("the state file has no run nonce")
		}
		r.PID, r.StartTime = 0, 0 // what a start not yet recorded leaves
	})

	s2 := newSupervisor(t, Options{StatePath: state})
	got := waitReady(t, s2, sp.ID)
	if got.PID != st.PID || got.Restarts != 0 {
		t.Fatalf("after the unrecorded start: %+v, want pid %d adopted, no restart", got, st.PID)
	}
	if !procfs.Running(st.PID, st.StartTime) {
		t.Fatalf("the original process %d was stopped", st.PID)
	}
}
