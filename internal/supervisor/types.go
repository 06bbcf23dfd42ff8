package supervisor

import (
	"context"
	"log/slog"
	"time"
)

// Spec declares one supervised process (a workload). Apply with the same
// Spec is a no-op; Apply with a changed Spec under the same ID replaces
// the process.
type Spec struct {
	// ID names the workload, e.g. "env/app/version/0" or "env/postgres":
	// [A-Za-z0-9._/-], at most 200 bytes, no empty or dot segments.
	ID string `json:"id"`
	// Group is the environment the workload belongs to; List filters by it.
	Group string `json:"group,omitempty"`
	// Command is the program and its arguments; Command[0] is an absolute
	// path (no PATH lookup: nothing is inherited).
	Command []string `json:"command"`
	// Dir is the working directory; "" is the supervisor's.
	Dir string `json:"dir,omitempty"`
	// Env is the exact environment (KEY=value); nothing is inherited.
	Env []string `json:"env,omitempty"`
	// UID and GID are used when Credential is set (a root supervisor
	// running a workload as an unprivileged user); otherwise the workload
	// runs as the supervisor's own user.
	UID        uint32 `json:"uid,omitempty"`
	GID        uint32 `json:"gid,omitempty"`
	Credential bool   `json:"credential,omitempty"`
	// LogPath receives stdout and stderr. The supervisor opens it
	// O_APPEND|O_CREATE with mode 0600 before each start.
	LogPath string `json:"logPath"`
	// Addr is the loopback "IP:port" the process listens on. Probes,
	// OnReady and Drain use it; it is kept across restarts. "" means the
	// workload serves nothing the supervisor probes (Readiness and
	// Liveness must then be nil).
	Addr string `json:"addr,omitempty"`
	// Readiness is probed for as long as the process runs. Nil: ready
	// once started.
	Readiness *Probe `json:"readiness,omitempty"`
	// Liveness, when set, kills and restarts a process that fails it
	// FailureThreshold times in a row. Nil: only an exit restarts.
	Liveness *Probe `json:"liveness,omitempty"`
	// StopSignal is sent to the process group to stop it. 0: SIGTERM
	// (PostgreSQL wants SIGINT, its fast shutdown).
	StopSignal int `json:"stopSignal,omitempty"`
	// StopGrace is how long a stop waits after StopSignal before it
	// sends SIGKILL to the process group. 0: 5s.
	StopGrace time.Duration `json:"stopGrace,omitempty"`
}

// Probe checks a workload at Spec.Addr: an HTTP GET of Path that passes
// on 2xx, or with Path "" a TCP connect that passes once accepted.
type Probe struct {
	Path string `json:"path,omitempty"`
	// Period between probes. 0: 1s.
	Period time.Duration `json:"period,omitempty"`
	// Timeout of one probe. 0: 1s.
	Timeout time.Duration `json:"timeout,omitempty"`
	// FailureThreshold is how many failures in a row change the verdict.
	// 0: 3.
	FailureThreshold int `json:"failureThreshold,omitempty"`
}

// State is where a workload is in its life; the words are
// runtime.ReplicaState's.
type State string

const (
	// Starting: started, not yet ready.
	Starting State = "Starting"
	// Running: running and has been ready; Status.Ready says whether it
	// passes readiness now.
	Running State = "Running"
	// BackOff: exited, waiting until Status.NextStart to be restarted
	// (Kubernetes' CrashLoopBackOff).
	BackOff State = "BackOff"
	// Stopping: being drained and stopped by Remove or StopAll.
	Stopping State = "Stopping"
)

// Status is what the supervisor knows of one workload.
type Status struct {
	ID    string `json:"id"`
	Group string `json:"group,omitempty"`
	Addr  string `json:"addr,omitempty"`
	// PID and StartTime (clock ticks after boot, /proc/<pid>/stat field
	// 22) identify the current process; 0 when none runs.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	State     State  `json:"state"`
	Ready     bool   `json:"ready"`
	// Restarts counts restarts since the workload was first applied.
	Restarts int `json:"restarts"`
	// LastExit describes the last exit: "exit status 1", "signal:
	// killed", "liveness probe failed".
	LastExit   string    `json:"lastExit,omitempty"`
	LastExitAt time.Time `json:"lastExitAt,omitzero"`
	// NextStart is when a workload in BackOff is restarted.
	NextStart time.Time `json:"nextStart,omitzero"`
	// Since is when the workload entered State.
	Since time.Time `json:"since,omitzero"`
	// LogTail is the last ~2 KiB of LogPath, filled in after an exit: by
	// Get, by List for a workload not ready, and by WaitReady's errors.
	LogTail string `json:"logTail,omitempty"`
}

// Clock is the supervisor's source of time, replaceable in tests.
type Clock interface {
	Now() time.Time
	// After fires once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Backoff is the restart schedule. The zero value of each field takes the
// documented default (see the package doc).
type Backoff struct {
	// Initial is the delay before the second restart in a row (the first
	// is immediate). 0: 1s.
	Initial time.Duration `json:"initial,omitempty"`
	// Max caps the delay. 0: 5m.
	Max time.Duration `json:"max,omitempty"`
	// Reset: a process that ran this long without exiting starts the
	// schedule over (its next restart is immediate again). 0: 10m.
	Reset time.Duration `json:"reset,omitempty"`
}

// Options configure a Supervisor.
type Options struct {
	// StatePath is the file holding every Spec and its process's pid and
	// start time, so the next supervisor adopts what still runs. "": not
	// persisted.
	StatePath string
	// Logger: nil logs nothing.
	Logger *slog.Logger
	// Clock: nil is the system clock. It times restarts (the backoff, the
	// reset, the timestamps of Status); probes and the stop grace period
	// use real timers, as they wait for real processes.
	Clock Clock
	// Backoff: zero fields take the defaults.
	Backoff Backoff
	// OnReady is called on every readiness change of a workload with an
	// Addr (gateway pool membership), never with the supervisor's lock
	// held. Nil: not called.
	OnReady func(addr string, ready bool)
	// OnPortTaken is called with true when a workload run as its own uid
	// (Credential) finds its Addr held by another uid's socket, and with
	// false once the workload holds it again: the gateway must not send
	// that address anything, not even failing open. Nil: not called.
	OnPortTaken func(addr string, taken bool)
	// Drain is called before Remove stops a workload with an Addr
	// (gateway drain: no new requests, in-flight ones finish), bounded by
	// Remove's ctx. Nil: not called.
	Drain func(ctx context.Context, addr string)
}
