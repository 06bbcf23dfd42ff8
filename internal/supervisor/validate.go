package supervisor

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Limits of a Spec.
const (
	maxIDLen     = 200
	maxArgs      = 256
	maxEnv       = 1024
	maxStringLen = 64 << 10
	maxPathLen   = 4096
	maxProbePath = 1024
	maxStopGrace = 10 * time.Minute
	maxPeriod    = time.Hour
	minPeriod    = 5 * time.Millisecond
	maxTimeout   = time.Minute
	maxThreshold = 100
)

// ValidationError is a Spec that cannot be applied.
type ValidationError struct{ msg string }

func (e *ValidationError) Error() string { return "invalid workload: " + e.msg }

func invalid(format string, args ...any) error {
	return &ValidationError{msg: fmt.Sprintf(format, args...)}
}

// Validate checks sp the way Apply does.
func Validate(sp Spec) error {
	if err := validID("id", sp.ID, false); err != nil {
		return err
	}
	if err := validID("group", sp.Group, true); err != nil {
		return err
	}
	if len(sp.Command) == 0 || len(sp.Command) > maxArgs {
		return invalid("command: %d arguments, want 1 to %d", len(sp.Command), maxArgs)
	}
	if !absClean(sp.Command[0]) {
		return invalid("command[0] %q: not an absolute, clean path", sp.Command[0])
	}
	for i, a := range sp.Command {
		if err := validString(fmt.Sprintf("command[%d]", i), a); err != nil {
			return err
		}
	}
	if len(sp.Env) > maxEnv {
		return invalid("env: %d variables, want at most %d", len(sp.Env), maxEnv)
	}
	for i, e := range sp.Env {
		if err := validString(fmt.Sprintf("env[%d]", i), e); err != nil {
			return err
		}
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return invalid("env[%d]: want KEY=value", i)
		}
	}
	if sp.Dir != "" && !absClean(sp.Dir) {
		return invalid("dir %q: not an absolute, clean path", sp.Dir)
	}
	if !absClean(sp.LogPath) {
		return invalid("logPath %q: not an absolute, clean path", sp.LogPath)
	}
	if err := validAddr(sp); err != nil {
		return err
	}
	for _, p := range []struct {
		name  string
		probe *Probe
	}{{"readiness", sp.Readiness}, {"liveness", sp.Liveness}} {
		if err := validProbe(p.name, p.probe); err != nil {
			return err
		}
	}
	if sp.StopSignal < 0 || sp.StopSignal > 64 {
		return invalid("stopSignal %d: want 0 (SIGTERM) or a signal number 1 to 64", sp.StopSignal)
	}
	if sp.StopGrace < 0 || sp.StopGrace > maxStopGrace {
		return invalid("stopGrace %v: want 0 (5s) up to %v", sp.StopGrace, maxStopGrace)
	}
	return nil
}

func validID(field, id string, empty bool) error {
	if id == "" {
		if empty {
			return nil
		}
		return invalid("%s: empty", field)
	}
	if len(id) > maxIDLen {
		return invalid("%s: %d bytes, want at most %d", field, len(id), maxIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/-", r)) {
			return invalid("%s %q: only letters, digits and . _ / - are allowed", field, id)
		}
	}
	for seg := range strings.SplitSeq(id, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return invalid("%s %q: empty, . or .. path segment", field, id)
		}
	}
	return nil
}

func validString(field, s string) error {
	if len(s) > maxStringLen {
		return invalid("%s: %d bytes, want at most %d", field, len(s), maxStringLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid("%s: contains a NUL byte", field)
	}
	return nil
}

func absClean(p string) bool {
	return len(p) <= maxPathLen && strings.IndexByte(p, 0) < 0 && filepath.IsAbs(p) && filepath.Clean(p) == p
}

func validAddr(sp Spec) error {
	if sp.Addr == "" {
		if sp.Readiness != nil || sp.Liveness != nil {
			return invalid("addr: required by the probes")
		}
		return nil
	}
	ap, err := netip.ParseAddrPort(sp.Addr)
	if err != nil {
		return invalid("addr %q: want IP:port (%v)", sp.Addr, err)
	}
	if !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return invalid("addr %q: want a loopback IP and a port", sp.Addr)
	}
	return nil
}

func validProbe(name string, p *Probe) error {
	if p == nil {
		return nil
	}
	if p.Path != "" {
		if !strings.HasPrefix(p.Path, "/") || len(p.Path) > maxProbePath ||
			strings.ContainsFunc(p.Path, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) {
			return invalid("%s.path %q: want an absolute URL path of at most %d bytes without spaces", name, p.Path, maxProbePath)
		}
	}
	if p.Period != 0 && (p.Period < minPeriod || p.Period > maxPeriod) {
		return invalid("%s.period %v: want 0 (1s) or %v to %v", name, p.Period, minPeriod, maxPeriod)
	}
	if p.Timeout != 0 && (p.Timeout < minPeriod || p.Timeout > maxTimeout) {
		return invalid("%s.timeout %v: want 0 (1s) or %v to %v", name, p.Timeout, minPeriod, maxTimeout)
	}
	if p.FailureThreshold < 0 || p.FailureThreshold > maxThreshold {
		return invalid("%s.failureThreshold %d: want 0 (3) to %d", name, p.FailureThreshold, maxThreshold)
	}
	return nil
}

// cloneSpec copies sp so that the caller's slices and probes are not
// shared.
func cloneSpec(sp Spec) Spec {
	sp.Command = slices.Clone(sp.Command)
	sp.Env = slices.Clone(sp.Env)
	if sp.Readiness != nil {
		r := *sp.Readiness
		sp.Readiness = &r
	}
	if sp.Liveness != nil {
		l := *sp.Liveness
		sp.Liveness = &l
	}
	return sp
}

func specEqual(a, b Spec) bool {
	probeEq := func(x, y *Probe) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return a.ID == b.ID && a.Group == b.Group && slices.Equal(a.Command, b.Command) && a.Dir == b.Dir &&
		slices.Equal(a.Env, b.Env) && a.UID == b.UID && a.GID == b.GID && a.Credential == b.Credential &&
		a.LogPath == b.LogPath && a.Addr == b.Addr && probeEq(a.Readiness, b.Readiness) &&
		probeEq(a.Liveness, b.Liveness) && a.StopSignal == b.StopSignal && a.StopGrace == b.StopGrace
}
