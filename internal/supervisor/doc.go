// Package supervisor keeps declared processes running: the local
// equivalent of a kubelet, hosted by Runway's data-plane process (runway
// gateway) so that replicas and each environment's PostgreSQL keep running,
// and are restarted, while the control plane is down.
//
// The control plane declares workloads (Apply with a Spec) and removes
// them (Remove); the supervisor starts each one, restarts it whenever it
// exits, probes it, and records every Spec with its process's pid and
// start time in Options.StatePath so that the next supervisor adopts what
// still runs.
//
// # Restarts
//
// Kubernetes' CrashLoopBackOff is the model: a container that exits is
// restarted with a delay that starts at 10s, doubles with every exit, is
// capped at 5m, and is reset once the container has run for 10m. Runway
// keeps the cap (Backoff.Max, 5m) and the reset (Backoff.Reset, 10m) but
// restarts the first exit at once and starts the doubling at 1s
// (Backoff.Initial): a local replica is a single process behind a gateway,
// so a replica killed by accident (kill -9, the OOM killer) should be back
// within milliseconds, not 10s, while a process that crashes at every
// start still settles at one start every 5m. The schedule of delays before
// the n-th consecutive restart is 0, 1s, 2s, 4s, ... 5m, 5m, ...; it starts
// over with 0 once a process has run Reset without exiting. Restarts are
// counted in Status.Restarts, with the last exit (Status.LastExit: "exit
// status 1", "signal: killed", "liveness probe failed") and its time.
// While waiting a workload is in State BackOff with Status.NextStart.
//
// Delays and timestamps come from Options.Clock, so the schedule is tested
// with a fake clock; probes and the stop grace period wait on real timers
// because they wait for real processes.
//
// # Processes
//
// A workload runs in its own process group (Setpgid), with exactly
// Spec.Env, in Spec.Dir, as Spec.UID/GID when Spec.Credential is set, and
// with stdout and stderr appended to Spec.LogPath (opened by the
// supervisor, 0600, never through a symlink). When the group leader exits,
// what remains of its group is killed (as a container's processes die with
// it) before the exit is reaped, so the pid cannot have been reused. A
// stop sends Spec.StopSignal (SIGTERM) to the group, waits Spec.StopGrace
// (5s), then sends SIGKILL to the group. The supervisor signals a process
// only while it can prove the process is the one it started: its child
// not yet reaped, or an adopted pid whose start time (procfs) still
// matches.
//
// # Probes
//
// Readiness is probed for as long as a process runs: an HTTP GET of
// http://Addr+Path that passes on 2xx, or with Path "" a TCP connect. A
// started (or restarted, or adopted) process is unready until its first
// passing probe; until then it is probed every 2ms, doubling up to
// Period, so a restart is noticed within tens of milliseconds.
// FailureThreshold failures in a row make a ready process unready, one
// success makes it ready again, and every change calls Options.OnReady
// (the gateway's pool membership). Without Readiness a process is ready
// once started.
//
// Liveness, when set, kills the process group (SIGKILL) after
// FailureThreshold failures in a row and restarts it, with LastExit
// "liveness probe failed". Failures count only once the process has come
// up (the liveness or the readiness probe passed once): a process that
// never comes up is left to WaitReady and the caller's progress deadline
// rather than killed while it starts (what Kubernetes' startupProbe is
// for).
//
// # State file
//
// The state file is JSON written atomically (internal/atomicfile) on every
// change of a Spec or a pid. New loads it: a recorded process that still
// runs (same pid and start time) is adopted and watched by polling /proc
// every 50ms (it is not the new supervisor's child); one that does not is
// restarted. A state file that cannot be read or parsed makes New fail:
// starting empty would silently forget (and orphan) every workload. Only
// an absent file means "no workloads".
//
// Close stops supervising and leaves the processes and the state file for
// the next supervisor; StopAll stops and forgets every workload.
package supervisor
