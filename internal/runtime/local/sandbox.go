package local

import (
	"path/filepath"
	"syscall"

	"github.com/runway-cd/runway/internal/sandbox"
)

// An environment's directory, dir/<env>, is root's and 0711: app code may
// pass through it to its home but not list it. Inside:
//
//	home/          0700, the environment's sandbox uid: HOME and TMPDIR of
//	               its replicas and jobs, the only place they may write
//	logs/          0700 root: replica logs (0600), opened by the supervisor
//	               and handed to each replica as stdout and stderr
//	postgres/      the PostgreSQL server's, owned by its OS user
//
// Beside the environments, dir/.supervisor.json (0600 root) is the
// in-process supervisor's state, when the runtime has no supervisor given:
// every workload's spec (database passwords included) and pid.
const (
	homeDir = "home"
	logsDir = "logs"
)

// envSandbox is how an environment's processes run: as whom and with
// which environment variables.
type envSandbox struct {
	cred *syscall.Credential // nil: as Runway's own user
	sb   *sandbox.Sandbox
	home string
}

// env is the allow-listed environment plus the caller's vars.
func (s envSandbox) env(vars ...string) []string { return s.sb.Env(s.home, vars...) }

func (e *environment) logDir() string  { return filepath.Join(e.dir, logsDir) }
func (e *environment) homeDir() string { return filepath.Join(e.dir, homeDir) }

// prepareEnv creates e's directories with their modes and owners (an
// existing one, made by an older Runway, is tightened) and returns how its
// processes run. The environment's uid is allocated on first use.
func (r *Runtime) prepareEnv(e *environment) (envSandbox, error) {
	sb := r.opts.Sandbox
	if err := sb.Dir(e.dir, 0o711, ""); err != nil {
		return envSandbox{}, err
	}
	if err := sb.Dir(e.logDir(), 0o700, ""); err != nil {
		return envSandbox{}, err
	}
	if err := sb.Dir(e.homeDir(), 0o700, e.name); err != nil {
		return envSandbox{}, err
	}
	cred, err := sb.Credential(e.name)
	if err != nil {
		return envSandbox{}, err
	}
	return envSandbox{cred: cred, sb: sb, home: e.homeDir()}, nil
}
