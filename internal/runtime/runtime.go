// Package runtime is the contract between Runway's controllers and where
// apps run. The local runtime (runtime/local, the default) runs every
// replica as a process on this machine and every environment's database as
// its own PostgreSQL server; a Kubernetes runtime fits the same contract
// with a namespace per environment.
//
// The contract is split by what its users do with it: Replicas runs
// versions of apps, Databases provides each environment's database, Jobs
// runs commands to completion, Environments lists and removes whole
// environments. A consumer declares the subset it calls; an implementation
// provides all of them (Runtime) and passes the conformance suite
// (runtime/runtimetest).
//
// Every method is idempotent: calling it again for what already exists
// changes nothing. Every environment, app and version name a method is
// given must be valid (ValidName); a method given any other fails with an
// error wrapping ErrInvalidName and creates, removes and stops nothing
// (Status, which has no error, returns nil). A runtime that cannot tell
// what runs (its data plane restarting, say) fails rather than answers or
// acts as if nothing ran: an error is never "nothing runs".
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ReplicaSet is N replicas of one version of an app in an environment.
type ReplicaSet struct {
	Env, App, Version string
	// Dir is the app artifact's directory; Command runs there.
	Dir     string
	Command []string
	// PortEnv names the variable carrying each replica's port.
	PortEnv string
	// HealthPath must answer 2xx before a replica counts as up: the
	// readiness probe's path when Readiness.Path is empty.
	HealthPath string
	// Readiness is probed for as long as a replica runs: a replica that
	// fails it is taken out of the gateway's pool until it passes again.
	Readiness Probe
	// Liveness, when set, restarts a replica that fails it
	// FailureThreshold times in a row. Nil: only an exit restarts it.
	Liveness *Probe
	Replicas int
	// Vars are extra environment variables (KEY=value).
	Vars []string
	// HealthTimeout bounds the wait for health. Zero value: 30s.
	HealthTimeout time.Duration
}

// Probe is an HTTP GET of Path on a replica's port: 2xx passes.
type Probe struct {
	Path string
	// Period between probes. Zero value: 1s.
	Period time.Duration
	// Timeout of one probe. Zero value: 1s.
	Timeout time.Duration
	// FailureThreshold failures in a row fail the probe. Zero value: 3.
	FailureThreshold int
}

// ReplicaState is where a replica is in its life.
type ReplicaState string

const (
	// ReplicaStarting: started, not yet ready.
	ReplicaStarting ReplicaState = "Starting"
	// ReplicaRunning: running; Ready says whether it passes readiness.
	ReplicaRunning ReplicaState = "Running"
	// ReplicaBackOff: exited and waiting to be restarted (Kubernetes'
	// CrashLoopBackOff).
	ReplicaBackOff ReplicaState = "BackOff"
	// ReplicaStopping: being drained and stopped.
	ReplicaStopping ReplicaState = "Stopping"
)

// ReplicaStatus is what the runtime knows of one replica.
type ReplicaStatus struct {
	Index int          `json:"index"`
	Addr  string       `json:"addr"`
	PID   int          `json:"pid,omitempty"`
	State ReplicaState `json:"state"`
	Ready bool         `json:"ready"`
	// Restarts counts restarts since the replica was first started.
	Restarts int `json:"restarts"`
	// LastExit is how the last run ended ("exit status 1", "signal:
	// killed", "liveness probe failed"), empty if it never ended.
	LastExit   string    `json:"lastExit,omitempty"`
	LastExitAt time.Time `json:"lastExitAt,omitzero"`
	// NextStart is when a replica in BackOff is started again.
	NextStart time.Time `json:"nextStart,omitzero"`
	// Since is when the replica entered State (or became (un)ready).
	Since time.Time `json:"since,omitzero"`
	// LogTail is the end of the replica's log (at most a few KiB),
	// secrets not redacted: callers redact before showing it.
	LogTail string `json:"logTail,omitempty"`
}

// Replica is one healthy, running replica.
type Replica struct {
	Addr string // host:port
	PID  int
}

// Job is a command run to completion against an environment: migrations
// or functional tests.
type Job struct {
	Env string
	// App is for logs: empty, or a valid name.
	App     string
	Name    string // for logs: "migrations", "tests"
	Dir     string
	Command []string
	Vars    []string
	Log     io.Writer
	Timeout time.Duration
}

// Deployment names one version of an app in an environment.
type Deployment struct {
	Env, App, Version string
}

// Database is how an app reaches its database.
type Database interface {
	// Env returns the variables an app gets: PGHOST ... and DATABASE_URL.
	Env() []string
}

// ErrUnsatisfiable marks a failure caused by what the app asks for, which
// trying again cannot fix: a database in an environment without one, an
// app name PostgreSQL cannot take as a role, a name the runtime refuses
// (ErrInvalidName). Other failures of Database are taken for the
// environment's and retried.
var ErrUnsatisfiable = errors.New("the app's needs cannot be met")

// ErrUnavailable marks a failure of the runtime itself, not of what was
// asked of it: its data plane is restarting, its API server cannot be
// reached. Trying again later may succeed; it says nothing of the version.
var ErrUnavailable = errors.New("the runtime is unavailable")

// ErrInvalidName marks a name of an environment, app or version that the
// runtime refuses (see ValidName). Every error wrapping it wraps
// ErrUnsatisfiable too: no retry makes the name valid.
var ErrInvalidName = errors.New("invalid name")

// MaxNameLen is the longest name a runtime takes: a DNS label, so that a
// name fits a Kubernetes namespace or label and a host name.
const MaxNameLen = 63

// ValidName reports whether s may name an environment, app or version: an
// RFC 1123 label of lower-case letters, digits and '-', starting and
// ending with a letter or digit, at most MaxNameLen long. Such a name is
// one path element, never "." or "..", with no space, and safe on a
// command line.
func ValidName(s string) bool {
	if s == "" || len(s) > MaxNameLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// CheckName returns nil if name is valid (ValidName), else an error
// wrapping ErrInvalidName and ErrUnsatisfiable that says which kind of
// name ("environment", "app", "version") was refused.
func CheckName(kind, name string) error {
	if ValidName(name) {
		return nil
	}
	shown := name
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	return fmt.Errorf("%s name %q: %w: %w: want a DNS label of [a-z0-9-], at most %d characters",
		kind, shown, ErrUnsatisfiable, ErrInvalidName, MaxNameLen)
}

// Replicas runs replica sets: versions of apps in environments.
type Replicas interface {
	// Start starts a replica set and waits until every replica is ready
	// (HealthPath answers 2xx, within HealthTimeout). Replicas already
	// running for that version are returned as they are, none restarted.
	// A replica that keeps exiting fails the start after a few restarts,
	// the error saying how it last exited ("exit status 3") and that it
	// was restarted; one never ready fails it at HealthTimeout. On
	// failure no replica this call started is left running.
	Start(ctx context.Context, rs ReplicaSet) ([]Replica, error)
	// Stop stops every replica of app at version in env, and nothing
	// else, and returns once they are stopped; stopping what does not run
	// succeeds.
	Stop(ctx context.Context, env, app, version string) error
	// Status says how each replica of app at version in env is doing, by
	// index; nil when none is known, which is also its answer when the
	// runtime cannot tell: a caller that must tell the two apart asks
	// Versions.
	Status(env, app, version string) []ReplicaStatus
	// Versions lists the versions of app that run in env (after a restart:
	// the adopted ones), sorted.
	// An error means the runtime could not tell (its data plane is
	// restarting, say): never read it as "nothing runs".
	Versions(env, app string) ([]string, error)
	// Running lists every version of every app the runtime runs or has
	// adopted, sorted by environment, app and version. An environment in
	// the middle of a change may be left out: absence from the list does
	// not mean that nothing runs.
	Running() []Deployment
}

// Databases provides each environment's PostgreSQL server and its apps'
// databases.
type Databases interface {
	// EnsurePostgres starts the environment's PostgreSQL server; one
	// already running is kept as it is.
	EnsurePostgres(ctx context.Context, env string) error
	// Database creates (if needed) the app's database and user on the
	// environment's server, the post-deploy hook, and returns the same
	// settings on every call. An error wrapping ErrUnsatisfiable is the
	// app's fault (no server in env, a name PostgreSQL cannot take).
	Database(ctx context.Context, env, app string) (Database, error)
}

// Jobs runs commands to completion against environments.
type Jobs interface {
	// RunJob runs a job to completion in its Dir, with only the runtime's
	// allow-listed variables and the job's Vars, its output to Log; a
	// non-zero exit is an error, and so is running past Timeout, which
	// ends the job and everything it started.
	RunJob(ctx context.Context, j Job) error
}

// Environments lists and removes whole environments.
type Environments interface {
	// Destroy removes everything of env: replicas, database server,
	// files; nothing of another environment. Destroying an environment
	// that does not exist succeeds.
	Destroy(ctx context.Context, env string) error
	// Envs lists the environments that have anything running or on disk,
	// sorted; only valid names.
	Envs() []string
	// CollectStrays stops what the runtime started but recorded nowhere
	// (a control plane killed between starting a process and recording
	// it), and says what it stopped. It never touches what it cannot
	// prove it started.
	CollectStrays(ctx context.Context) ([]string, error)
}

// Runtime runs environments: everything a runtime implements. Every
// method is idempotent: calling it again for what already exists changes
// nothing.
type Runtime interface {
	Replicas
	Databases
	Jobs
	Environments
}
