package gateway

import "testing"

func TestParseHost(t *testing.T) {
	g := New(Options{})
	tests := []struct {
		name    string
		host    string
		wantEnv string
		wantApp string
		wantOK  bool
	}{
		{name: "production", host: "homelabping.localhost", wantEnv: "production", wantApp: "homelabping", wantOK: true},
		{name: "staging", host: "homelabping.v20261125120000.localhost", wantEnv: "v20261125120000", wantApp: "homelabping", wantOK: true},
		{name: "with port", host: "homelabping.localhost:8080", wantEnv: "production", wantApp: "homelabping", wantOK: true},
		{name: "staging with port", host: "db.pr-7.localhost:80", wantEnv: "pr-7", wantApp: "db", wantOK: true},
		{name: "uppercase", host: "HomeLabPing.V1.LOCALHOST", wantEnv: "v1", wantApp: "homelabping", wantOK: true},
		{name: "trailing dot", host: "homelabping.localhost.", wantEnv: "production", wantApp: "homelabping", wantOK: true},
		{name: "trailing dot and port", host: "homelabping.localhost.:8080", wantEnv: "production", wantApp: "homelabping", wantOK: true},
		{name: "bare domain", host: "localhost"},
		{name: "bare domain with port", host: "localhost:8080"},
		{name: "empty", host: ""},
		{name: "leading dot", host: ".localhost"},
		{name: "empty labels", host: "..localhost"},
		{name: "empty app", host: ".v1.localhost"},
		{name: "empty env", host: "app..localhost"},
		{name: "three labels", host: "a.b.c.localhost"},
		{name: "other domain", host: "homelabping.example.com"},
		{name: "domain as label suffix", host: "homelabpinglocalhost"},
		{name: "underscore", host: "home_lab.localhost"},
		{name: "two trailing dots", host: "app.localhost.."},
		{name: "ipv4", host: "127.0.0.1:8080"},
		{name: "ipv6", host: "[::1]:8080"},
		{name: "non-ascii", host: "häus.localhost"},
		{name: "space", host: "a b.localhost"},
		{name: "label too long", host: "a123456789012345678901234567890123456789012345678901234567890123.localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, app, ok := g.parseHost(tt.host)
			if ok != tt.wantOK || env != tt.wantEnv || app != tt.wantApp {
				t.Errorf("parseHost(%q) = %q, %q, %v; want %q, %q, %v",
					tt.host, env, app, ok, tt.wantEnv, tt.wantApp, tt.wantOK)
			}
		})
	}
}

func TestHost(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		env, app string
		want     string
	}{
		{name: "production default", env: "production", app: "homelabping", want: "homelabping.localhost"},
		{name: "staging default", env: "v20261125120000", app: "homelabping", want: "homelabping.v20261125120000.localhost"},
		{name: "custom domain", opts: Options{Domain: "Apps.Example.COM."}, env: "production", app: "web", want: "web.apps.example.com"},
		{name: "custom production env", opts: Options{ProductionEnv: "prod"}, env: "prod", app: "web", want: "web.localhost"},
		{name: "production name as staging", opts: Options{ProductionEnv: "prod"}, env: "production", app: "web", want: "web.production.localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(tt.opts)
			got := g.Host(tt.env, tt.app)
			if got != tt.want {
				t.Fatalf("Host(%q, %q) = %q, want %q", tt.env, tt.app, got, tt.want)
			}
			env, app, ok := g.parseHost(got)
			if !ok || env != tt.env || app != tt.app {
				t.Errorf("parseHost(%q) = %q, %q, %v; want %q, %q, true", got, env, app, ok, tt.env, tt.app)
			}
		})
	}
}

func FuzzParseHost(f *testing.F) {
	for _, h := range []string{"app.localhost", "app.env.localhost:80", "..localhost", "a.b.c.localhost", "[::1]:1", "APP.LOCALHOST."} {
		f.Add(h)
	}
	g := New(Options{})
	f.Fuzz(func(t *testing.T, host string) {
		env, app, ok := g.parseHost(host)
		if !ok {
			return
		}
		if !validLabel(env) || !validLabel(app) {
			t.Fatalf("parseHost(%q) accepted invalid names %q, %q", host, env, app)
		}
		env2, app2, ok2 := g.parseHost(g.Host(env, app))
		if !ok2 || env2 != env || app2 != app {
			t.Fatalf("Host(%q, %q) does not parse back: %q, %q, %v", env, app, env2, app2, ok2)
		}
	})
}
