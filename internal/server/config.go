package server

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/notify"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/webhook"
)

// Config is the server's configuration file (YAML). Zero values take the
// documented defaults.
type Config struct {
	// DataDir holds the store, artifacts and environments. Required.
	DataDir string `json:"dataDir"`
	// Listen is the API and webhook address. Default 127.0.0.1:7070.
	Listen  string        `json:"listen,omitempty"`
	Gateway GatewayConfig `json:"gateway,omitempty"`
	// StateRepo is the GitOps state repository: one for every app.
	StateRepo RepoConfig `json:"stateRepo"`
	// WebhookSecret verifies X-Hub-Signature-256. When empty, the value of
	// the environment variable RUNWAY_WEBHOOK_SECRET is used; one of them
	// is required.
	WebhookSecret string `json:"webhookSecret,omitempty"`
	// Apps are the tracked apps, any number of them sharing the state
	// repository. Each has a unique name and a unique (repo, branch): a
	// push names the app it is for by its repository and branch.
	Apps     []AppConfig    `json:"apps"`
	Timeouts TimeoutsConfig `json:"timeouts,omitempty"`
	Staging  StagingConfig  `json:"staging,omitempty"`
	// PollInterval is the fallback re-read of the state repository.
	// Default 30s.
	PollInterval appspec.Duration `json:"pollInterval,omitempty"`
	// ScrapeInterval is how often Runway scrapes the gateway's metrics for
	// its embedded PromQL. Default 2s.
	ScrapeInterval appspec.Duration `json:"scrapeInterval,omitempty"`
	Postgres       PostgresConfig   `json:"postgres,omitempty"`
	// StopDataPlaneOnExit stops the gateway, the apps and their databases
	// when runway serve exits. Default false: they keep serving and the
	// next start adopts them.
	StopDataPlaneOnExit bool `json:"stopDataPlaneOnExit,omitempty"`
	// ShutdownGrace is how long SIGTERM lets running pipeline steps that
	// do work (builds, pushes, migrations, tests) finish before they are
	// interrupted; waits stop at once. Default 20s.
	ShutdownGrace appspec.Duration `json:"shutdownGrace,omitempty"`

	// WorkDir holds what app code may touch: artifacts, build work
	// directories and environments (their replicas' homes, logs and
	// PostgreSQL servers). It is kept apart from DataDir (0700, Runway's
	// secrets and store) so that unprivileged app processes can reach their
	// own files without being able to enter DataDir. Default: DataDir with
	// "-work" appended (a sibling directory).
	WorkDir  string         `json:"workDir,omitempty"`
	API      APIConfig      `json:"api,omitempty"`
	TLS      TLSConfig      `json:"tls,omitempty"`
	Reporter ReporterConfig `json:"reporter,omitempty"`
	Sandbox  SandboxConfig  `json:"sandbox,omitempty"`
	Limits   LimitsConfig   `json:"limits,omitempty"`
	Analysis AnalysisConfig `json:"analysis,omitempty"`
	// Runtime is where apps run: "local" (the default: processes and
	// PostgreSQL servers on this machine, behind Runway's gateway) or
	// "kubernetes" (a namespace per environment, Argo Rollouts for the
	// production canary; see Kubernetes and docs/kubernetes.md).
	Runtime    string           `json:"runtime,omitempty"`
	Kubernetes KubernetesConfig `json:"kubernetes,omitempty"`
	// Notifications are the outbound notifications of pipelines' ends and
	// rollouts' pauses, aborts and promotions (docs/notifications.md).
	Notifications notify.Config `json:"notifications,omitempty"`
}

// Runtimes Config.Runtime takes.
const (
	RuntimeLocal      = "local"
	RuntimeKubernetes = "kubernetes"
	// RuntimeArgoCD is the kubernetes runtime with Argo CD syncing the
	// environments from the state repository (`runway export argocd`):
	// Runway prepares each environment's namespace and Secrets and waits
	// on the export's hook reports; it still builds, runs migrations and
	// tests as Jobs, steers Argo Rollouts and reverts in git.
	RuntimeArgoCD = "argocd"
)

// KubernetesConfig configures the kubernetes and argocd runtimes.
type KubernetesConfig struct {
	// Kubeconfig is the path of a kubeconfig file. Empty: the in-cluster
	// config (runway serve in a pod, deploy/).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// NamespacePrefix starts every environment's namespace. Default
	// "runway-".
	NamespacePrefix string `json:"namespacePrefix,omitempty"`
	// Registry is where the artifacts' images are pushed
	// (host[:port][/path]). Required.
	Registry string `json:"registry,omitempty"`
	// RegistryInsecure talks plain HTTP to the registry (a registry on
	// loopback or inside the cluster's network only).
	RegistryInsecure bool `json:"registryInsecure,omitempty"`
	// BaseImage is the image artifacts are layered on. Default: an empty
	// base, enough for static Go binaries.
	BaseImage string `json:"baseImage,omitempty"`
	// ImageBuild, when set, replaces Runway's own image build: a shell
	// command run in the artifact's directory with RUNWAY_ARTIFACT_DIR,
	// RUNWAY_IMAGE_NAME, RUNWAY_IMAGE_TAG and RUNWAY_IMAGE set, which
	// builds and pushes an image and prints its reference last.
	ImageBuild string `json:"imageBuild,omitempty"`
	// PostgresAdminURLFile holds the admin URL of an existing PostgreSQL
	// server (a Secret mounted as a file): every environment's apps get a
	// database and role of their own there. Empty: no databases.
	PostgresAdminURLFile string `json:"postgresAdminURLFile,omitempty"`
	// PostgresHost is that server's host as pods reach it. Default: the
	// admin URL's.
	PostgresHost string `json:"postgresHost,omitempty"`
	// PrometheusAddress is the cluster's Prometheus, written into every
	// AnalysisTemplate's prometheus.address. Required.
	PrometheusAddress string `json:"prometheusAddress,omitempty"`
	// ReporterURL is Runway's API as pods reach it (the reporter's
	// routes), e.g. http://runway.runway-system.svc:7070. Default: the
	// API listener's own address, right when Runway runs outside the
	// cluster on an address its pods can route to.
	ReporterURL string `json:"reporterURL,omitempty"`
}

// APIConfig protects the API listener (every route but the webhook and
// /healthz needs a token).
type APIConfig struct {
	// AdminToken and ReadToken override the tokens Runway generates at
	// first start into DataDir (admin.token, read.token, 0600). When empty,
	// RUNWAY_ADMIN_TOKEN and RUNWAY_READ_TOKEN are used, then the files.
	AdminToken string `json:"adminToken,omitempty"`
	ReadToken  string `json:"readToken,omitempty"`
	// AnonymousRead lets GET routes answer without a token. Off by
	// default; Runway says so at start when it is on.
	AnonymousRead bool `json:"anonymousRead,omitempty"`
	// Hosts are the names (host or host:port) the API answers to besides
	// loopback addresses and localhost; any other Host header is refused
	// (DNS rebinding).
	Hosts []string `json:"hosts,omitempty"`
}

// TLSConfig serves the API listener over TLS when both files are set.
type TLSConfig struct {
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// ReporterConfig configures the reporter's HTTP routes.
type ReporterConfig struct {
	// Compatibility lets POST /workflow/update through without a token,
	// as the original workflow-reporter did (a wrong token is still
	// refused). Off by default: updates need the expectation's token.
	// POST /workflow/submit needs the admin token either way. See
	// docs/security.md for the risk.
	Compatibility bool `json:"compatibility,omitempty"`
}

// SandboxConfig sets who app code (builds, replicas, jobs) runs as.
type SandboxConfig struct {
	// UIDBase and UIDCount are the range of numeric uids (and gids of the
	// same number) Runway hands out when it runs as root: one per
	// environment and one per app for its builds, so no environment (and
	// no app's build) can read another's processes or files. No account needs to exist for them.
	// Default 1500000 and 10000: above the ranges Debian allocates.
	UIDBase  uint32 `json:"uidBase,omitempty"`
	UIDCount uint32 `json:"uidCount,omitempty"`
	// Env names extra variables of Runway's own environment passed to app
	// code (besides PATH, LANG, TZ and Go's proxy settings); every other
	// variable of Runway's is withheld.
	Env []string `json:"env,omitempty"`
	// Vars are KEY=value variables set for app code (an internal GOPROXY,
	// say) without being in Runway's environment. Never put a secret of
	// Runway's here: every build, replica and job sees them.
	Vars []string `json:"vars,omitempty"`
	// CacheDir holds the builds' Go module and build caches, one directory
	// per app owned by its build uid, kept across builds. Default
	// WorkDir/cache.
	CacheDir string `json:"cacheDir,omitempty"`
}

// LimitsConfig caps the work Runway takes on at once; what is over a cap
// waits, queued, with the reason in its status.
type LimitsConfig struct {
	// Pipelines is how many pipelines run at once. Default 4.
	Pipelines int `json:"pipelines,omitempty"`
	// StagingEnvironments is how many staging environments exist at once.
	// Default 4.
	StagingEnvironments int `json:"stagingEnvironments,omitempty"`
	// ParallelEnvironments is how many environments are brought up at
	// once (their replicas started and health-checked); the others wait
	// their turn. Default 8.
	ParallelEnvironments int `json:"parallelEnvironments,omitempty"`
}

// AnalysisConfig configures the analysis providers.
type AnalysisConfig struct {
	// PrometheusAddresses are the Prometheus server URLs an app's
	// AnalysisTemplate may name in provider.prometheus.address. Default
	// none: only the embedded engine (an empty address). A template naming
	// any other address fails validation at build.
	PrometheusAddresses []string `json:"prometheusAddresses,omitempty"`
}

// MinWebhookSecret is the shortest accepted webhook secret.
const MinWebhookSecret = webhook.MinSecret

// GatewayConfig configures the data plane.
type GatewayConfig struct {
	// Listen is the gateway's address. Default 127.0.0.1:8080.
	Listen string `json:"listen,omitempty"`
	// Domain is the host suffix: <app>.<domain> is production,
	// <app>.<env>.<domain> a staging environment. Default localhost.
	Domain string `json:"domain,omitempty"`
	// Mode is "process" (the default: the gateway is its own process and
	// keeps serving while runway serve restarts; a restarted runway serve
	// adopts it) or "inprocess".
	Mode string `json:"mode,omitempty"`
	// Command runs the gateway process. Default: this binary's "gateway"
	// subcommand.
	Command []string `json:"command,omitempty"`
	// AllowedBackends are CIDRs (e.g. "10.0.0.0/8") that the gateway may
	// send traffic to besides loopback (127.0.0.0/8, ::1). Routes to any
	// other address are refused by the gateway's admin API. Default none:
	// loopback only, which is where the local runtime's replicas listen.
	AllowedBackends []string `json:"allowedBackends,omitempty"`
}

// RepoConfig names the state repository and its branch.
type RepoConfig struct {
	// URL is where Runway clones it from and pushes to. Required.
	URL string `json:"url"`
	// Branch is the branch Runway reads and writes. Default main.
	Branch string `json:"branch,omitempty"`
	// Repo is the repository's full name as GitHub sends it (owner/name).
	// Optional: when set, a GitHub push webhook for it on Branch (pointed
	// at the same /webhooks/github, with the same secret) reconciles the
	// environments at once, as Argo CD's webhook does, instead of at the
	// next pollInterval; pushes to its other branches are acknowledged and
	// ignored. Empty: changes are seen at the next poll.
	Repo string `json:"repo,omitempty"`
}

// AppConfig is a tracked app.
type AppConfig struct {
	// Name is the app's name in manifests; its runway.yaml must agree.
	Name string `json:"name"`
	// Repo is the repository's full name as GitHub sends it
	// (owner/name).
	Repo string `json:"repo"`
	// URL is where Runway clones it from (never taken from the webhook).
	URL string `json:"url"`
	// Branch is the tracked branch. Default main.
	Branch string `json:"branch,omitempty"`
	// Paths, when set, are the paths of the repository whose change
	// triggers a pipeline: a push that changes none of them (after
	// IgnorePaths) is acknowledged as ignored, with the reason, and runs
	// nothing. Each is a glob relative to the repository's root, without
	// a leading or trailing slash: "**" as a whole segment matches any
	// number of directories (none included), "*" any part of one segment
	// (never a "/"), "?" one character, "[a-z]" a class, "\" escapes;
	// e.g. "src/**", "go.mod", "**/*.sql". Empty: every push triggers.
	// The changed paths are those that differ between the push's before
	// and after commits in the app's repository (the commits' lists in
	// the payload only when git cannot tell); a new branch, or a push
	// changing more than 10000 paths, is never filtered. At most 100
	// patterns.
	Paths []string `json:"paths,omitempty"`
	// IgnorePaths are globs (as Paths) of paths whose change never
	// triggers a pipeline, even when Paths selects them ("docs/**",
	// "**/*.md"). Empty: none. At most 100 patterns.
	IgnorePaths []string `json:"ignorePaths,omitempty"`
	// Service, when set, says the repository is a service's own rather
	// than an app's: "postgres", the only one today, for the database's
	// repository (schema, setup hooks, no app image), like the original's
	// "just-pipeline" flow. Its runway.yaml has migrations and tests but
	// no run command; a push builds only its pipeline artifact, and the
	// change reaches staging and production as a new deploy.revision (and
	// images.pipeline tag) of the manifests' entry Name, whose
	// images.code (postgres 15) stays as it is: Name must be that entry's
	// name (postgres in the manifests Runway writes). Empty: an app.
	Service string `json:"service,omitempty"`
}

// TimeoutsConfig bounds the waits. When one passes, the pipeline fails
// with a reason naming the step and the deadline.
type TimeoutsConfig struct {
	Deploy   appspec.Duration `json:"deploy,omitempty"`   // staging reports; default 5m
	Rollout  appspec.Duration `json:"rollout,omitempty"`  // production canary; default 30m
	Health   appspec.Duration `json:"health,omitempty"`   // replica health; default 60s
	Teardown appspec.Duration `json:"teardown,omitempty"` // staging gone; default 2m
	// Job bounds each migrations or functional tests job of a pipeline,
	// on top of the job's own timeout in the app's runway.yaml. Default
	// 10m.
	Job appspec.Duration `json:"job,omitempty"`
	// Build bounds each build step (build-app, build-pipeline). Default
	// 15m.
	Build appspec.Duration `json:"build,omitempty"`
}

// StagingConfig sets how long staging environments live.
type StagingConfig struct {
	// TTL is a staging environment's longest life, counted from the
	// pipeline step that pushed its manifest (or, for a manifest no
	// pipeline explains, from the commit that added it). Then its
	// manifest is deleted ("expire staging environment X: TTL 24h
	// passed") and a pipeline still waiting on it fails. Default 24h.
	TTL appspec.Duration `json:"ttl,omitempty"`
	// KeepOnFailure keeps a failed pipeline's staging environment for
	// debugging until its TTL. Default false: it is torn down.
	KeepOnFailure bool `json:"keepOnFailure,omitempty"`
}

// PostgresConfig configures the per-environment PostgreSQL servers.
type PostgresConfig struct {
	// BinDir holds initdb and postgres. Default: pg_config --bindir.
	BinDir string `json:"binDir,omitempty"`
	// RunAsUser runs PostgreSQL when Runway runs as root. Default
	// postgres, or nobody.
	RunAsUser string `json:"runAsUser,omitempty"`
}

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if c.Gateway.Listen == "" {
		c.Gateway.Listen = "127.0.0.1:8080"
	}
	if c.Gateway.Domain == "" {
		c.Gateway.Domain = "localhost"
	}
	if c.Gateway.Mode == "" {
		c.Gateway.Mode = "process"
	}
	if c.StateRepo.Branch == "" {
		c.StateRepo.Branch = "main"
	}
	if c.Runtime == "" {
		c.Runtime = RuntimeLocal
	}
	if c.Kubernetes.NamespacePrefix == "" {
		c.Kubernetes.NamespacePrefix = "runway-"
	}
	for i := range c.Apps {
		if c.Apps[i].Branch == "" {
			c.Apps[i].Branch = "main"
		}
	}
	if c.WebhookSecret == "" {
		c.WebhookSecret = os.Getenv("RUNWAY_WEBHOOK_SECRET")
	}
	def := func(d *appspec.Duration, v time.Duration) {
		if d.Duration == 0 {
			d.Duration = v
		}
	}
	if c.WorkDir == "" && c.DataDir != "" {
		c.WorkDir = filepath.Clean(c.DataDir) + "-work"
	}
	if c.Sandbox.UIDBase == 0 {
		c.Sandbox.UIDBase = 1500000
	}
	if c.Sandbox.UIDCount == 0 {
		c.Sandbox.UIDCount = 10000
	}
	if c.Sandbox.CacheDir == "" && c.WorkDir != "" {
		c.Sandbox.CacheDir = filepath.Join(c.WorkDir, "cache")
	}
	if c.Limits.Pipelines == 0 {
		c.Limits.Pipelines = 4
	}
	if c.Limits.StagingEnvironments == 0 {
		c.Limits.StagingEnvironments = 4
	}
	if c.Limits.ParallelEnvironments == 0 {
		c.Limits.ParallelEnvironments = 8
	}
	if c.API.AdminToken == "" {
		c.API.AdminToken = os.Getenv("RUNWAY_ADMIN_TOKEN")
	}
	if c.API.ReadToken == "" {
		c.API.ReadToken = os.Getenv("RUNWAY_READ_TOKEN")
	}
	def(&c.PollInterval, 30*time.Second)
	def(&c.ScrapeInterval, 2*time.Second)
	def(&c.Timeouts.Deploy, 5*time.Minute)
	def(&c.Timeouts.Rollout, 30*time.Minute)
	def(&c.Timeouts.Health, 60*time.Second)
	def(&c.Timeouts.Teardown, 2*time.Minute)
	def(&c.Timeouts.Job, 10*time.Minute)
	def(&c.Timeouts.Build, 15*time.Minute)
	def(&c.Staging.TTL, 24*time.Hour)
	def(&c.ShutdownGrace, 20*time.Second)
}

func (c *Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir is required"))
	}
	if c.StateRepo.URL == "" {
		errs = append(errs, errors.New("stateRepo.url is required"))
	}
	if c.Gateway.Mode != "process" && c.Gateway.Mode != "inprocess" {
		errs = append(errs, fmt.Errorf("gateway.mode %q must be process or inprocess", c.Gateway.Mode))
	}
	if err := gateway.ParseBackendPolicy(gateway.BackendPolicy{Allowed: c.Gateway.AllowedBackends}); err != nil {
		errs = append(errs, fmt.Errorf("gateway.allowedBackends: %w", err))
	}
	if c.WebhookSecret == "" {
		errs = append(errs, errors.New("webhookSecret (or RUNWAY_WEBHOOK_SECRET) is required"))
	} else if len(c.WebhookSecret) < MinWebhookSecret {
		errs = append(errs, fmt.Errorf("webhookSecret must be at least %d characters (GitHub recommends a random string of high entropy)", MinWebhookSecret))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.certFile and tls.keyFile must be set together"))
	}
	if c.Limits.Pipelines < 0 || c.Limits.StagingEnvironments < 0 || c.Limits.ParallelEnvironments < 0 {
		errs = append(errs, errors.New("limits must not be negative (leave them out for the default)"))
	}
	if c.WorkDir != "" && c.DataDir != "" {
		if rel, err := filepath.Rel(filepath.Clean(c.DataDir), filepath.Clean(c.WorkDir)); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
			errs = append(errs, fmt.Errorf("workDir %s must not be dataDir or inside it: app code cannot enter dataDir", c.WorkDir))
		}
	}
	for i, h := range c.API.Hosts {
		if err := validAPIHost(h); err != nil {
			errs = append(errs, fmt.Errorf("api.hosts[%d] %q: %w", i, h, err))
		}
	}
	for _, tok := range []struct{ key, v string }{{"api.adminToken", c.API.AdminToken}, {"api.readToken", c.API.ReadToken}} {
		if tok.v != "" && len(tok.v) < 16 {
			errs = append(errs, fmt.Errorf("%s must be at least 16 characters", tok.key))
		}
	}
	errs = append(errs, c.validateRuntime()...)
	errs = append(errs, c.validateDurations()...)
	errs = append(errs, c.validateStateRepo()...)
	errs = append(errs, c.validateApps()...)
	errs = append(errs, c.Notifications.Validate()...)
	return errors.Join(errs...)
}

// validateRuntime checks runtime and, for kubernetes, what it needs.
func (c *Config) validateRuntime() []error {
	switch c.Runtime {
	case RuntimeLocal:
		return nil
	case RuntimeKubernetes, RuntimeArgoCD:
	default:
		return []error{fmt.Errorf("runtime %q must be %s, %s or %s", c.Runtime, RuntimeLocal, RuntimeKubernetes, RuntimeArgoCD)}
	}
	var errs []error
	k := c.Kubernetes
	if k.Registry == "" && k.ImageBuild == "" {
		errs = append(errs, errors.New("kubernetes.registry is required (or kubernetes.imageBuild)"))
	}
	if k.PrometheusAddress == "" {
		errs = append(errs, errors.New("kubernetes.prometheusAddress is required: Argo Rollouts' analysis queries it"))
	} else if u, err := url.Parse(k.PrometheusAddress); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("kubernetes.prometheusAddress %q must be an http(s) URL", k.PrometheusAddress))
	}
	if u, err := url.Parse(k.ReporterURL); k.ReporterURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		errs = append(errs, fmt.Errorf("kubernetes.reporterURL %q must be an http(s) URL", k.ReporterURL))
	}
	if len(k.NamespacePrefix) > 20 || strings.Trim(k.NamespacePrefix, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || strings.HasPrefix(k.NamespacePrefix, "-") {
		errs = append(errs, fmt.Errorf("kubernetes.namespacePrefix %q must be at most 20 of [a-z0-9-], not starting with '-'", k.NamespacePrefix))
	}
	return errs
}

// validateStateRepo checks stateRepo.repo, when set: a GitHub full name
// that no app tracks on the same branch (a push there would be both).
func (c *Config) validateStateRepo() []error {
	repo := c.StateRepo.Repo
	if repo == "" {
		return nil
	}
	if err := webhook.ValidRepoName(repo); err != nil {
		return []error{fmt.Errorf("stateRepo.repo: %w", err)}
	}
	var errs []error
	for i, a := range c.Apps {
		if a.Repo == repo && a.Branch == c.StateRepo.Branch {
			errs = append(errs, fmt.Errorf("apps[%d] (%s) tracks branch %s of %s, the state repository's: a push there cannot be both", i, a.Name, a.Branch, repo))
		}
	}
	return errs
}

// validateApps checks each app and that no two share a name or a (repo,
// branch): a push must name one app. Errors name the entries.
func (c *Config) validateApps() []error {
	var errs []error
	names := map[string]int{}
	pushes := map[[2]string]int{}
	for i, a := range c.Apps {
		entry := fmt.Sprintf("apps[%d]", i)
		if a.Name != "" {
			entry = fmt.Sprintf("apps[%d] (%s)", i, a.Name)
		}
		if !appspec.ValidName(a.Name) {
			errs = append(errs, fmt.Errorf("apps[%d].name %q must be a DNS label", i, a.Name))
		}
		if a.Repo == "" || a.URL == "" {
			errs = append(errs, fmt.Errorf("%s needs repo and url", entry))
		} else if err := webhook.ValidRepoName(a.Repo); err != nil {
			errs = append(errs, fmt.Errorf("%s.repo: %w", entry, err))
		}
		if j, ok := names[a.Name]; ok {
			errs = append(errs, fmt.Errorf("apps[%d]: app %q is listed twice (apps[%d] too)", i, a.Name, j))
		} else {
			names[a.Name] = i
		}
		key := [2]string{a.Repo, a.Branch}
		if j, ok := pushes[key]; ok && a.Repo != "" {
			errs = append(errs, fmt.Errorf("%s tracks branch %s of %s, as apps[%d] (%s) does: a push there must name one app",
				entry, a.Branch, a.Repo, j, c.Apps[j].Name))
		} else {
			pushes[key] = i
		}
		if a.Service != "" && a.Service != pipeline.ServicePostgres {
			errs = append(errs, fmt.Errorf("%s.service %q is not a known service (known: %s)", entry, a.Service, pipeline.ServicePostgres))
		}
		f := webhook.PathFilter{Paths: a.Paths, IgnorePaths: a.IgnorePaths}
		if err := f.Validate(); err != nil {
			for _, err := range unjoin(err) {
				errs = append(errs, fmt.Errorf("%s: %w", entry, err))
			}
		}
	}
	return errs
}

// validateDurations rejects negative durations (zero takes the default)
// and a staging TTL too short for a staging environment to be used.
func (c *Config) validateDurations() []error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"timeouts.deploy", c.Timeouts.Deploy.Duration},
		{"timeouts.rollout", c.Timeouts.Rollout.Duration},
		{"timeouts.health", c.Timeouts.Health.Duration},
		{"timeouts.teardown", c.Timeouts.Teardown.Duration},
		{"timeouts.job", c.Timeouts.Job.Duration},
		{"timeouts.build", c.Timeouts.Build.Duration},
		{"staging.ttl", c.Staging.TTL.Duration},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s must not be negative (leave it out for the default)", d.key, d.v))
		}
	}
	if ttl, deploy := c.Staging.TTL.Duration, c.Timeouts.Deploy.Duration; ttl > 0 && ttl < deploy {
		errs = append(errs, fmt.Errorf("staging.ttl %s is shorter than timeouts.deploy %s: staging environments would expire before they are ready", ttl, deploy))
	}
	return errs
}

// app returns the tracked app for a push to repo's branch.
func (c *Config) app(repo, branch string) (AppConfig, bool) {
	for _, a := range c.Apps {
		if a.Repo == repo && a.Branch == branch {
			return a, true
		}
	}
	return AppConfig{}, false
}

// unjoin returns the errors errors.Join made err of, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// validAPIHost accepts a host name or address, with an optional port, as a
// Host header carries it; a URL or a path is a mistake.
func validAPIHost(h string) error {
	if h == "" || strings.ContainsAny(h, "/@?#* \t") {
		return errors.New("must be a host name or host:port, not a URL")
	}
	host := h
	if hp, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a port number", port)
		}
		host = hp
	}
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		return nil
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 {
			return errors.New("is not a valid host name")
		}
	}
	return nil
}
