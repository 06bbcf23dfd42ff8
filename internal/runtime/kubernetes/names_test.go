package kubernetes

import (
	"regexp"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// dnsLabel is RFC 1123's label: what a namespace, a label value and
// every name the runtime makes must be.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// pgIdent is an unquoted-safe PostgreSQL identifier of at most 63 bytes.
var pgIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func TestShorten(t *testing.T) {
	long := strings.Repeat("a", 100)
	tests := []struct {
		name   string
		in     string
		max    int
		assert func(t *testing.T, got string)
	}{
		{
			name: "a name short enough is itself",
			in:   "runway-env-a", max: 63,
			assert: func(t *testing.T, got string) {
				if got != "runway-env-a" {
					t.Errorf("got %q", got)
				}
			},
		},
		{
			name: "exactly the limit is itself",
			in:   strings.Repeat("b", 63), max: 63,
			assert: func(t *testing.T, got string) {
				if got != strings.Repeat("b", 63) {
					t.Errorf("got %q", got)
				}
			},
		},
		{
			name: "a long name is cut to the limit with a hash, still a DNS label",
			in:   long, max: 63,
			assert: func(t *testing.T, got string) {
				if len(got) != 63 || !dnsLabel.MatchString(got) || !strings.HasPrefix(got, "aaaa") {
					t.Errorf("got %q (%d)", got, len(got))
				}
			},
		},
		{
			name: "a cut that ends at a dash stays a DNS label",
			in:   strings.Repeat("a", 51) + "-" + strings.Repeat("c", 40), max: 63,
			assert: func(t *testing.T, got string) {
				if !dnsLabel.MatchString(got) || strings.Contains(got, "--") {
					t.Errorf("got %q", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.assert(t, shorten(tt.in, tt.max)) })
	}
}

func TestShortenKeepsNamesApart(t *testing.T) {
	seen := map[string]string{}
	base := strings.Repeat("x", 60)
	for _, in := range []string{base + "-1", base + "-2", base + "-10", base + "1", base + "2"} {
		got := shorten("runway-"+in, 63)
		if other, ok := seen[got]; ok {
			t.Errorf("%q and %q both shortened to %q", other, in, got)
		}
		seen[got] = in
	}
}

func TestNamespace(t *testing.T) {
	r := &Runtime{prefix: DefaultNamespacePrefix}
	long := strings.Repeat("e", runtime.MaxNameLen)
	tests := []struct {
		env, want string
	}{
		{"env-a", "runway-env-a"},
		{"v20261201101010", "runway-v20261201101010"},
	}
	for _, tt := range tests {
		if got := r.Namespace(tt.env); got != tt.want {
			t.Errorf("Namespace(%q) = %q, want %q", tt.env, got, tt.want)
		}
	}
	got := r.Namespace(long)
	if !dnsLabel.MatchString(got) || len(got) > 63 || !strings.HasPrefix(got, "runway-eee") {
		t.Errorf("Namespace of a 63-character env = %q, want a DNS label starting with the prefix", got)
	}
	if got == r.Namespace(long[:62]+"f") {
		t.Errorf("two long envs share namespace %q", got)
	}
	for _, env := range []string{"env-a", long} {
		if !r.owns(r.Namespace(env), env) {
			t.Errorf("owns(Namespace(%q), %q) = false", env, env)
		}
	}
	other := &Runtime{prefix: "rw3-"}
	if other.owns(r.Namespace("env-a"), "env-a") {
		t.Error("a runtime of another prefix owns runway-env-a")
	}
	if r.owns("runway-env-a", "env-b") {
		t.Error("a namespace labelled with another env is owned")
	}
	if r.owns("runway-../x", "../x") {
		t.Error("an invalid env label is owned")
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"runway-", "rw1-", "a", "rw-1-2-"} {
		if err := checkPrefix(ok); err != nil {
			t.Errorf("checkPrefix(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"-rw", "RW-", "rw_", "rw/", strings.Repeat("p", 60), "--"} {
		if err := checkPrefix(bad); err == nil {
			t.Errorf("checkPrefix(%q) succeeded", bad)
		}
	}
}

func TestWorkloadAndServiceNames(t *testing.T) {
	long := strings.Repeat("w", runtime.MaxNameLen)
	tests := []struct {
		app, version string
		wantWorkload string
		wantService  string
	}{
		{"web", "v1", "web-v1", "web"},
		{"9web", "v1", "9web-v1", ""},
		{long, "v20261201101010", "", ""},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		w, s := workloadName(tt.app, tt.version), serviceName(tt.app)
		if tt.wantWorkload != "" && w != tt.wantWorkload {
			t.Errorf("workloadName(%q, %q) = %q, want %q", tt.app, tt.version, w, tt.wantWorkload)
		}
		if tt.wantService != "" && s != tt.wantService {
			t.Errorf("serviceName(%q) = %q, want %q", tt.app, s, tt.wantService)
		}
		if !dnsLabel.MatchString(w) {
			t.Errorf("workloadName(%q, %q) = %q: no DNS label", tt.app, tt.version, w)
		}
		// A Service's name is an RFC 1035 label: it starts with a letter.
		if !dnsLabel.MatchString(s) || s[0] < 'a' || s[0] > 'z' {
			t.Errorf("serviceName(%q) = %q: no RFC 1035 label", tt.app, s)
		}
		if seen[w] {
			t.Errorf("workload name %q twice", w)
		}
		seen[w] = true
	}
	// "a-b" + "c" and "a" + "b-c" join alike; Start refuses the second
	// (see adoptDeployment), which TestStartRefusesATakenName checks.
	if workloadName(long, "v1") == workloadName(long, "v2") {
		t.Error("two versions of a long app share a Deployment name")
	}
}

func TestLabelValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"migrations", "migrations"},
		{"tests", "tests"},
		{"functional tests", ""},
		{"../../etc", ""},
		{"", "job"},
		{"---", "job"},
		{strings.Repeat("Z", 200), ""},
	}
	for _, tt := range tests {
		got := labelValue(tt.in, 40)
		if tt.want != "" && got != tt.want {
			t.Errorf("labelValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !dnsLabel.MatchString(got) || len(got) > 40 {
			t.Errorf("labelValue(%q) = %q: not a label of at most 40", tt.in, got)
		}
	}
	if labelValue("a b", 63) == labelValue("a/b", 63) {
		t.Error(`"a b" and "a/b" give the same label value`)
	}
}

func TestDBName(t *testing.T) {
	long := strings.Repeat("d", runtime.MaxNameLen)
	nsA, nsB := "runway-env-a", "rw2-env-a"
	names := map[string]string{}
	for _, c := range []struct{ ns, app string }{
		{nsA, "web"}, {nsA, "api"}, {nsB, "web"}, {nsA, "pg-monitor"}, {nsA, long}, {nsA, long[:62] + "e"}, {nsA, "a-b"},
	} {
		got := dbName(c.ns, c.app)
		if !pgIdent.MatchString(got) {
			t.Errorf("dbName(%q, %q) = %q: not a plain identifier of at most 63 bytes", c.ns, c.app, got)
		}
		if !strings.HasPrefix(got, dbPrefix(c.ns)) {
			t.Errorf("dbName(%q, %q) = %q does not start with the environment's prefix %q", c.ns, c.app, got, dbPrefix(c.ns))
		}
		if strings.HasPrefix(got, "pg_") {
			t.Errorf("dbName(%q, %q) = %q: a pg_ role is PostgreSQL's", c.ns, c.app, got)
		}
		key := c.ns + " " + c.app
		if other, ok := names[got]; ok {
			t.Errorf("%s and %s share database %q", other, key, got)
		}
		names[got] = key
	}
	if dbPrefix(nsA) == dbPrefix(nsB) {
		t.Error("two namespaces share a database prefix")
	}
}
