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
	// HealthPath must answer 2xx before a replica counts as up.
	HealthPath string
	Replicas   int
	// Vars are extra environment variables (KEY=value).
	Vars []string
	// HealthTimeout bounds the wait for health. Zero value: 30s.
	HealthTimeout time.Duration
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
	// Versions lists the versions of app that run in env (after a restart:
	// the adopted ones), sorted.
	Versions(env, app string) []string
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
