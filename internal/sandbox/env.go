package sandbox

import (
	"os"
	"strings"
)

// allowed are the variables of Runway's own environment app code gets
// (besides LC_* and the configured names): what a build or a program needs
// to find tools, speak the locale and reach a Go module proxy. Nothing
// else passes, so no secret of Runway's (RUNWAY_WEBHOOK_SECRET, tokens)
// and no other environment's settings reach app code.
var allowed = map[string]bool{
	"PATH": true, "LANG": true, "TZ": true,
	"GOPROXY": true, "GONOSUMDB": true, "GONOSUMCHECK": true, "GOPRIVATE": true,
	"GOSUMDB": true, "GOFLAGS": true, "GOTOOLCHAIN": true,
}

// defaultPath is PATH when Runway's environment has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// Env is the environment of an app process: the allow-listed variables of
// Runway's own environment, the configured Vars, HOME and TMPDIR set to
// home (a directory the process may write), then extra (KEY=value, what
// the caller gives: database settings, RUNWAY_APP_URL ...). A later
// variable overrides an earlier one of the same name.
func (s *Sandbox) Env(home string, extra ...string) []string {
	var names map[string]bool
	var vars []string
	if s != nil {
		names = make(map[string]bool, len(s.opts.Env))
		for _, n := range s.opts.Env {
			names[n] = true
		}
		vars = s.opts.Vars
	}
	env := make([]string, 0, 16+len(vars)+len(extra))
	hasPath := false
	for _, kv := range os.Environ() {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || strings.HasPrefix(k, "RUNWAY_") {
			continue
		}
		if allowed[k] || strings.HasPrefix(k, "LC_") || names[k] {
			env = append(env, kv)
			hasPath = hasPath || k == "PATH"
		}
	}
	if !hasPath {
		env = append(env, "PATH="+defaultPath)
	}
	env = append(env, vars...)
	if home != "" {
		env = append(env, "HOME="+home, "TMPDIR="+home)
	}
	return dedup(append(env, extra...))
}

// Allowed reports whether name may come from Runway's own environment.
func (s *Sandbox) Allowed(name string) bool {
	if strings.HasPrefix(name, "RUNWAY_") {
		return false
	}
	if allowed[name] || strings.HasPrefix(name, "LC_") {
		return true
	}
	if s != nil {
		for _, n := range s.opts.Env {
			if n == name {
				return true
			}
		}
	}
	return false
}

// dedup keeps the last value of each name, in the order of first
// appearance, so /proc/<pid>/environ shows each variable once.
func dedup(env []string) []string {
	last := make(map[string]int, len(env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = i
	}
	out := make([]string, 0, len(last))
	seen := make(map[string]bool, len(last))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, env[last[k]])
	}
	return out
}
