// Package runtimetest is the conformance suite of runtime.Runtime: every
// implementation (runtime/local now, a Kubernetes runtime next) runs it
// from a test of its own,
//
//	func TestConformance(t *testing.T) {
//		runtimetest.Run(t, runtimetest.Harness{New: ..., Program: ..., Unrelated: ...})
//	}
//
// in the shape of tailscale's testStoreSemantics: one entry point, one
// subtest per promise of the contract, each on a fresh runtime, so an
// implementation that passes behaves as the controllers expect of any.
//
// The suite runs the program in ./testapp (an HTTP server and a job) as
// replicas and jobs; the harness says how the runtime runs it: a directory
// holding the built binary for a runtime of local processes (BuildProgram),
// an image for a Kubernetes one. The database tests need a real
// PostgreSQL (the local runtime finds it with `pg_config --bindir`) and
// start one server for all of them. The suite reaches replicas at
// Replica.Addr and databases at their DATABASE_URL from the test process.
package runtimetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// Harness is what the suite needs of one runtime implementation.
type Harness struct {
	// New returns a fresh, empty runtime; when t ends (t.Cleanup) nothing
	// it ran or created is left. Required.
	New func(t *testing.T) runtime.Runtime
	// Program is the test program as the runtime runs it. Required.
	Program Program
	// Unrelated starts something of the kind the runtime runs (a process,
	// a pod) that the runtime did not start, as like one of env's own as a
	// stranger can make it, stopped when t ends; alive says whether it
	// still runs. Required: the suite checks that CollectStrays and
	// Destroy leave it alone.
	Unrelated func(t *testing.T, env string) (alive func() bool)
	// ProcessAlive reports whether the process with a pid the suite was
	// told of (Replica.PID, a job's "pid N") still runs; a zombie has
	// exited. Nil: checks by pid are skipped (a runtime whose pids are not
	// this machine's), checks by address remain.
	ProcessAlive func(pid int) bool
	// Outage, when set, cuts rt off from what it runs, which keeps
	// running (its data plane restarting, an API server unreachable);
	// restore ends the outage. The suite checks that meanwhile the runtime
	// fails rather than answers "nothing runs", and is right again after.
	// Nil: that test is skipped.
	Outage func(t *testing.T, rt runtime.Runtime) (restore func())
	// SkipPostgres, when not empty, skips the database tests with this
	// reason (PostgreSQL is not installed).
	SkipPostgres string
	// SharedPostgres says the runtime puts every environment's databases
	// on one existing server (the Kubernetes runtime): Destroy removes the
	// environment's roles and databases, and the server keeps serving the
	// others. False: each environment has a server of its own, which
	// Destroy stops.
	SharedPostgres bool
}

// Program is the test program (./testapp) as the runtime runs it: the
// directory it runs in (ReplicaSet.Dir and Job.Dir) and the command that
// starts it, to which the suite appends testapp's arguments ("serve ...",
// "exit 3", "job ..."). For a runtime whose replicas listen on more than
// loopback, the command carries testapp's -host flag. For a runtime of
// images, Dir is what that runtime takes an artifact's Dir for (where the
// image of testapp was built from, say) and Command the image's
// entrypoint.
type Program struct {
	Dir     string
	Command []string
}

// programPackage is testapp's import path.
const programPackage = "github.com/runway-cd/runway/internal/runtime/runtimetest/testapp"

// BuildProgram builds testapp into dir (as dir/testapp, static) for a
// runtime that runs this machine's binaries. It runs `go build`, so call
// it once per test binary (TestMain, or a sync.Once), from within the
// module.
func BuildProgram(dir string) (Program, error) {
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "testapp"), programPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Program{}, fmt.Errorf("building %s: %w\n%s", programPackage, err, out)
	}
	return Program{Dir: dir, Command: []string{"./testapp"}}, nil
}

// Run runs the conformance suite against the runtime h makes: one subtest
// per promise, one after another (each sets an environment variable of
// the test process that no app may see), each on a runtime of its own.
func Run(t *testing.T, h Harness) {
	if h.New == nil || len(h.Program.Command) == 0 || h.Unrelated == nil {
		t.Fatal("runtimetest: Harness needs New, Program and Unrelated")
	}
	s := &suite{h: h}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"StartIsIdempotent", s.testStartIdempotent},
		{"StartWaitsForReadiness", s.testStartWaitsForReadiness},
		{"StartOfAVersionThatExitsFails", s.testStartExits},
		{"StartOfAVersionNeverReadyFails", s.testStartNeverReady},
		{"StatusShowsRestarts", s.testStatusRestarts},
		{"ReadinessIsFollowed", s.testReadinessFollowed},
		{"LivenessRestarts", s.testLivenessRestarts},
		{"ConcurrentChanges", s.testConcurrentChanges},
		{"StopStopsOnlyThatVersion", s.testStopOnlyThatVersion},
		{"VersionsAndRunningAreSorted", s.testVersionsRunning},
		{"RunJob", s.testRunJob},
		{"Databases", s.testDatabases},
		{"DestroyRemovesOnlyThatEnv", s.testDestroy},
		{"HostileNamesAreRefused", s.testHostileNames},
		{"CollectStraysLeavesStrangersAlone", s.testCollectStrays},
		{"AnOutageIsNeverNothingRuns", s.testOutage},
	} {
		t.Run(tc.name, tc.run)
	}
}
