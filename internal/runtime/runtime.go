// Package runtime is the contract between Runway's controllers and where
// apps run. The local runtime (runtime/local, the default) runs every
// replica as a process on this machine and every environment's database as
// its own PostgreSQL server; a Kubernetes runtime fits the same contract
// with a namespace per environment.
package runtime

import (
	"context"
	"errors"
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
	Env, App string
	Name     string // for logs: "migrations", "tests"
	Dir      string
	Command  []string
	Vars     []string
	Log      io.Writer
	Timeout  time.Duration
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
// app name PostgreSQL cannot take as a role. Other failures of Database
// are taken for the environment's and retried.
var ErrUnsatisfiable = errors.New("the app's needs cannot be met")

// Runtime runs environments. Every method is idempotent: calling it again
// for what already exists changes nothing.
type Runtime interface {
	// EnsurePostgres starts the environment's PostgreSQL server.
	EnsurePostgres(ctx context.Context, env string) error
	// Database creates (if needed) the app's database and user on the
	// environment's server: the post-deploy hook. An error wrapping
	// ErrUnsatisfiable is the app's fault.
	Database(ctx context.Context, env, app string) (Database, error)
	// Start starts a replica set and waits until every replica is healthy;
	// replicas already running for that version are returned as they are.
	Start(ctx context.Context, rs ReplicaSet) ([]Replica, error)
	// Stop stops every replica of app at version in env.
	Stop(ctx context.Context, env, app, version string) error
	// RunJob runs a job to completion; a non-zero exit is an error.
	RunJob(ctx context.Context, j Job) error
	// Destroy removes everything of env: replicas, database server, files.
	Destroy(ctx context.Context, env string) error
	// Envs lists the environments that have anything running or on disk.
	Envs() []string
	// Status says how each replica of app at version in env is doing;
	// nil when none is known.
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
	// CollectStrays stops what the runtime started but recorded nowhere
	// (a control plane killed between starting a process and recording
	// it), and says what it stopped. It never touches what it cannot
	// prove it started.
	CollectStrays(ctx context.Context) ([]string, error)
}
