package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/runway-cd/runway/internal/runtime"
)

// maxDNSLabel is the longest name of a namespace, a Service, a label
// value, and what the runtime makes any of its names at most.
const maxDNSLabel = 63

// hashLen is how many hex digits of a name's hash a shortened name ends
// with: 40 bits, so two names that share their first 50-odd characters
// still differ.
const hashLen = 10

// shorten returns name when it is at most max long, else its first
// characters and a hash of the whole, "-" between, max long: distinct
// names give distinct results (but for a hash collision), a name already
// short enough is itself, and a valid DNS label stays one (it keeps its
// first character and ends with a hex digit).
func shorten(name string, max int) string {
	if len(name) <= max {
		return name
	}
	head := strings.TrimRight(name[:max-hashLen-1], "-")
	return head + "-" + hashHex(name)[:hashLen]
}

// hashHex is the hex SHA-256 of parts joined by NUL (which no name holds).
func hashHex(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}

// checkPrefix refuses a namespace prefix that cannot start a DNS label.
func checkPrefix(prefix string) error {
	if len(prefix) > maxDNSLabel-hashLen-2 || !runtime.ValidName(strings.TrimRight(prefix, "-")) {
		return fmt.Errorf("kubernetes runtime: NamespacePrefix %q: want the start of a DNS label ([a-z0-9-], starting with a letter or digit, at most %d characters)",
			prefix, maxDNSLabel-hashLen-2)
	}
	return nil
}

// workloadName is the name of the Deployment (and its Secret) of one
// version of an app: <app>-<version>, shortened.
func workloadName(app, version string) string {
	return shorten(app+"-"+version, maxDNSLabel)
}

// ServiceName is the Service of app (and so its host name in its
// environment's namespace): the app's name when it starts with a letter,
// as a Service's name must (RFC 1035). One that starts with a digit gets
// "app-" before it and a hash of it after, so that no other app's name
// is it (but for a hash collision): "app-1api" is an app's own Service,
// "1api"'s is "app-1api-<hash>". ensureService refuses a Service of that
// name that is another app's.
func ServiceName(app string) string {
	if app != "" && app[0] >= '0' && app[0] <= '9' {
		h := hashHex("service", app)[:hashLen]
		return shorten("app-"+app, maxDNSLabel-hashLen-1) + "-" + h
	}
	return app
}

// serviceName is ServiceName.
func serviceName(app string) string { return ServiceName(app) }

// labelValue makes free text (a job's name) a label value and name part:
// lower-case letters, digits and '-', starting and ending with a letter or
// digit, at most max long, "job" when nothing is left.
func labelValue(s string, max int) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		return "job"
	}
	if out != s {
		// Changed: make it tell apart texts that map to the same.
		out = shorten(out+"-"+hashHex(s)[:6], max)
	}
	return strings.Trim(shorten(out, max), "-")
}

// dbName is the PostgreSQL role and database of app in the environment
// whose namespace is ns: "rw_", a hash of the namespace (so environments
// of different runtimes on one server never share one), and the app's
// name with '-' as '_', shortened with a hash of it past 63 bytes. App
// names never hold '_', so the mapping is one to one.
func dbName(ns, app string) string {
	name := dbPrefix(ns) + strings.ReplaceAll(app, "-", "_")
	if len(name) <= maxDNSLabel {
		return name
	}
	return name[:maxDNSLabel-hashLen-1] + "_" + hashHex(app)[:hashLen]
}

// dbPrefix starts the names of every role and database of the
// environment whose namespace is ns.
func dbPrefix(ns string) string { return "rw_" + hashHex("namespace", ns)[:hashLen] + "_" }

// dbSecretName is the Secret holding app's database settings: "db." and
// the app's name. A Secret's name is a DNS subdomain, so it may hold a
// '.', which no workload's or job's Secret name does (they are DNS
// labels): it is never another's (workloadName("db", "web") is "db-web").
func dbSecretName(app string) string { return "db." + app }

// legacyDBSecretName is where older runtimes kept app's database
// settings, which could be a workload's name too; databasePassword takes
// a password over from there (checking its labels).
func legacyDBSecretName(app string) string { return shorten("db-"+app, maxDNSLabel) }
