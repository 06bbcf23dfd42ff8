package sandbox

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
)

var discard = slog.New(slog.DiscardHandler)

func TestEnv(t *testing.T) {
	t.Setenv("RUNWAY_WEBHOOK_SECRET", "0123456789abcdef0123")
	t.Setenv("RUNWAY_ADMIN_TOKEN", "0123456789abcdef0123")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter2hunter2")
	t.Setenv("PATH", "/usr/bin:/bin")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("LC_ALL", "C")
	t.Setenv("TZ", "UTC")
	t.Setenv("GOPROXY", "http://127.0.0.1:1")
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Setenv("HTTP_PROXY", "http://proxy:3128")
	t.Setenv("HOME", "/root")
	t.Setenv("TMPDIR", "/tmp/runway-secret-tmp")
	t.Setenv("GOCACHE", "/root/.cache/go-build")
	withNames, err := New(Options{Disabled: true, Logger: discard, Env: []string{"HTTP_PROXY"}, Vars: []string{"GOSUMDB=off", "GOPROXY=http://127.0.0.1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		sb    *Sandbox
		home  string
		extra []string
		want  []string // exactly these, in any order
	}{
		{
			name: "built-in allow-list only", sb: nil, home: "/work/envs/a/home",
			want: []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "GOPROXY=http://127.0.0.1:1", "GOFLAGS=-mod=mod",
				"HOME=/work/envs/a/home", "TMPDIR=/work/envs/a/home"},
		},
		{
			name: "configured names and vars; the caller's vars win", sb: withNames, home: "/h",
			extra: []string{"PGPASSWORD=app-own", "RUNWAY_APP_URL=http://x", "TMPDIR=/h/tmp"},
			want: []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "GOPROXY=http://127.0.0.1:2", "GOFLAGS=-mod=mod",
				"HTTP_PROXY=http://proxy:3128", "GOSUMDB=off", "HOME=/h", "TMPDIR=/h/tmp", "PGPASSWORD=app-own", "RUNWAY_APP_URL=http://x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.sb.Env(tt.home, tt.extra...)
			a, b := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(a, b) {
				t.Fatalf("Env =\n%s\nwant\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
			}
		})
	}
}

func TestEnvDefaultPath(t *testing.T) {
	t.Setenv("PATH", "")
	got := (*Sandbox)(nil).Env("/h")
	if !slices.Contains(got, "PATH="+defaultPath) && !slices.Contains(got, "PATH=") {
		t.Fatalf("Env = %v, want a PATH", got)
	}
}

func TestAllowed(t *testing.T) {
	sb, err := New(Options{Disabled: true, Logger: discard, Env: []string{"HTTP_PROXY"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want bool
	}{
		{"PATH", true}, {"LC_CTYPE", true}, {"GONOSUMCHECK", true}, {"HTTP_PROXY", true},
		{"RUNWAY_WEBHOOK_SECRET", false}, {"HOME", false}, {"AWS_SECRET_ACCESS_KEY", false}, {"LD_PRELOAD", false}, {"GOCACHE", false},
	} {
		if got := sb.Allowed(c.name); got != c.want {
			t.Errorf("Allowed(%s) = %v, want %v", c.name, got, c.want)
		}
	}
}
