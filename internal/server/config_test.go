package server

import (
	"os"
	"strings"
	"testing"
)

// TestConfigSeveralApps: many apps in one config, each named once and
// tracking its own (repo, branch), with valid path filters; every error
// names the offending entry.
func TestConfigSeveralApps(t *testing.T) {
	valid := func() Config {
		return Config{DataDir: "/d", StateRepo: RepoConfig{URL: "/s", Repo: "o/state"}, WebhookSecret: "0123456789abcdef",
			Apps: []AppConfig{
				{Name: "web", Repo: "o/web", URL: "/w"},
				{Name: "api", Repo: "o/api", URL: "/a", Paths: []string{"src/**", "go.mod"}, IgnorePaths: []string{"**/*.md"}},
				{Name: "web-next", Repo: "o/web", URL: "/w", Branch: "next"},
				{Name: "db", Repo: "o/db", URL: "/db", Paths: []string{"migrations/*.sql", "hooks/**"}},
				{Name: "postgres", Repo: "o/postgres", URL: "/pg", Service: "postgres"},
			}}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // each must be in the error; none: valid
	}{
		{name: "valid", change: func(*Config) {}},
		{name: "same repo, other branch", change: func(c *Config) { c.Apps[2].Branch = "release" }},
		{name: "state repo on another branch of an app's repo", change: func(c *Config) { c.StateRepo.Repo = "o/web"; c.StateRepo.Branch = "state" }},
		{name: "name twice", change: func(c *Config) { c.Apps[3].Name = "api" },
			want: []string{`apps[3]: app "api" is listed twice (apps[1] too)`}},
		{name: "same repo and branch", change: func(c *Config) { c.Apps[2].Branch = "" },
			want: []string{"apps[2] (web-next) tracks branch main of o/web, as apps[0] (web) does"}},
		{name: "default branch counts as main", change: func(c *Config) { c.Apps[2].Branch = "main" },
			want: []string{"apps[2] (web-next) tracks branch main of o/web"}},
		{name: "bad path glob", change: func(c *Config) { c.Apps[1].Paths = []string{"src/**", "/abs", "a**"} },
			want: []string{`apps[1] (api): paths[1] "/abs": invalid path pattern`, `apps[1] (api): paths[2] "a**": invalid path pattern`}},
		{name: "bad ignore glob", change: func(c *Config) { c.Apps[3].IgnorePaths = []string{"[x"} },
			want: []string{`apps[3] (db): ignorePaths[0] "[x": invalid path pattern`}},
		{name: "too many patterns", change: func(c *Config) { c.Apps[0].Paths = make([]string, 101) },
			want: []string{"apps[0] (web): paths has 101 patterns, at most 100"}},
		{name: "repo not a GitHub full name", change: func(c *Config) { c.Apps[0].Repo = "https://github.com/o/web" },
			want: []string{`apps[0] (web).repo: "https://github.com/o/web" is not a GitHub full name`}},
		{name: "state repo not a GitHub full name", change: func(c *Config) { c.StateRepo.Repo = "state" },
			want: []string{`stateRepo.repo: "state" is not a GitHub full name`}},
		{name: "state repo is an app's branch", change: func(c *Config) { c.StateRepo.Repo = "o/web" },
			want: []string{"apps[0] (web) tracks branch main of o/web, the state repository's"}},
		{name: "several errors at once", change: func(c *Config) { c.Apps[1].Name = "web"; c.Apps[3].Repo = "" },
			want: []string{`apps[1]: app "web" is listed twice`, "apps[3] (db) needs repo and url"}},
		{name: "unknown service", change: func(c *Config) { c.Apps[4].Service = "redis" },
			want: []string{`apps[4] (postgres).service "redis" is not a known service (known: postgres)`}},
		{name: "service kinds are case-sensitive", change: func(c *Config) { c.Apps[4].Service = "Postgres" },
			want: []string{`apps[4] (postgres).service "Postgres" is not a known service`}},
		{name: "negative parallel environments", change: func(c *Config) { c.Limits.ParallelEnvironments = -1 },
			want: []string{"limits must not be negative"}},
		{name: "kubernetes with what it needs", change: func(c *Config) {
			c.Runtime = "kubernetes"
			c.Kubernetes = KubernetesConfig{Registry: "registry.example.com/team", PrometheusAddress: "http://prometheus.monitoring:9090",
				ReporterURL: "http://runway.runway-system.svc:7070"}
		}},
		{name: "unknown runtime", change: func(c *Config) { c.Runtime = "nomad" },
			want: []string{`runtime "nomad" must be local, kubernetes or argocd`}},
		{name: "kubernetes without registry or prometheus", change: func(c *Config) { c.Runtime = "kubernetes" },
			want: []string{"kubernetes.registry is required", "kubernetes.prometheusAddress is required"}},
		{name: "kubernetes with bad URLs and prefix", change: func(c *Config) {
			c.Runtime = "kubernetes"
			c.Kubernetes = KubernetesConfig{ImageBuild: "ko build", PrometheusAddress: "prometheus:9090", ReporterURL: "ftp://x", NamespacePrefix: "Runway_"}
		}, want: []string{`kubernetes.prometheusAddress "prometheus:9090" must be an http(s) URL`, `kubernetes.reporterURL "ftp://x" must be an http(s) URL`,
			`kubernetes.namespacePrefix "Runway_" must be at most 20 of [a-z0-9-]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RUNWAY_WEBHOOK_SECRET", "")
			c := valid()
			tt.change(&c)
			c.setDefaults()
			err := c.validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("validate() = %v\nwant it to say %q", err, w)
				}
			}
		})
	}
}

func TestConfigLimitsDefaults(t *testing.T) {
	c := Config{DataDir: "/d"}
	c.setDefaults()
	if c.Limits.ParallelEnvironments != 8 || c.Limits.Pipelines != 4 || c.Limits.StagingEnvironments != 4 {
		t.Fatalf("limits defaults %+v, want 8 parallel environments, 4 pipelines, 4 staging", c.Limits)
	}
	c = Config{DataDir: "/d", Limits: LimitsConfig{ParallelEnvironments: 2}}
	c.setDefaults()
	if c.Limits.ParallelEnvironments != 2 {
		t.Fatalf("parallelEnvironments %d, want the configured 2", c.Limits.ParallelEnvironments)
	}
}

// TestLoadConfigSeveralApps reads the YAML a user writes for two apps
// with path filters and a state repository webhook.
func TestLoadConfigSeveralApps(t *testing.T) {
	path := t.TempDir() + "/runway.yaml"
	yaml := `dataDir: /d
stateRepo:
  url: /s
  repo: o/state
webhookSecret: 0123456789abcdef
limits:
  parallelEnvironments: 3
apps:
  - name: web
    repo: o/web
    url: /w
    paths: ["src/**", "go.mod"]
    ignorePaths: ["**/*.md"]
  - name: db
    repo: o/db
    url: /db
  - name: postgres
    repo: o/postgres
    url: /pg
    service: postgres
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.StateRepo.Repo != "o/state" || c.Limits.ParallelEnvironments != 3 || len(c.Apps) != 3 || c.Apps[2].Service != "postgres" || c.Apps[0].Service != "" ||
		strings.Join(c.Apps[0].Paths, ",") != "src/**,go.mod" || strings.Join(c.Apps[0].IgnorePaths, ",") != "**/*.md" {
		t.Fatalf("config read as %+v", c)
	}
}
