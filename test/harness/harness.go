// Package harness is what the end-to-end tests and benchmarks drive: a
// real Runway (in this process, or as a "runway serve" process of its own
// that can be killed) with its state repository and one or more app
// repositories in a temporary directory, seeded from examples/. It talks to
// Runway only through public interfaces: git pushes (to the app
// repositories and, by hand, to the state repository), signed GitHub
// webhooks, the JSON API and HTTP through the gateway.
//
// It lives under test/ so that the runway binary does not link it (go list
// -deps ./cmd/runway names no harness); runway demo has its own, smaller
// driver in internal/demo.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/demo"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/server"
)

// AppName and RepoName are the example app's names; it is always the
// first app of a harness.
const (
	AppName  = demo.AppName
	RepoName = demo.RepoName
	// Owner owns every repository the harness makes, as GitHub names
	// them: Owner/<app>, and StateRepoName for the state repository.
	Owner         = "homelab"
	StateRepoName = Owner + "/state"
)

// Ended reports whether a pipeline has ended, in any final phase
// (Succeeded, Failed, Superseded, Cancelled).
func Ended(p *pipeline.Pipeline) bool { return p.Phase.Done() }

// Harness is a Runway with its repositories in a temporary directory.
type Harness struct {
	Dir      string
	StateURL string
	// AppURL is the example app's repository (AppRepo(AppName)).
	AppURL   string
	Secret   string
	Examples string
	Server   *server.Server
	client   *http.Client
	cfg      server.Config
	gwAddr   string
	logger   *slog.Logger
	cancel   context.CancelFunc
	done     chan error
	apiAddr  string
	// proc is the control plane when it runs as its own process.
	proc *controlPlane
	logw io.Writer
	// modules serves Go modules to the sandboxed builds; nil if none.
	modules *demo.ModuleProxy
	// token is the API's admin token, sent on every API call.
	token string
	// apps are the tracked apps by name: their repositories.
	apps map[string]string
}

// App is an app the harness adds besides the example: a copy of
// examples/homelabping under another name, in a repository of its own
// (Owner/<Name>).
type App struct {
	// Name is the app's name in the config, its runway.yaml and the
	// manifests.
	Name string
	// Paths, if set, are the app's path filters (the config's
	// apps[].paths): a push touching none of them starts no pipeline.
	Paths []string
}

// Options configure a harness.
type Options struct {
	// Examples is the examples/ directory of the Runway source tree.
	Examples string
	// Dir is where everything goes; "" makes a temporary directory.
	Dir string
	// Log receives the server's log. Nil discards it.
	Log io.Writer
	// Apps are tracked besides the example app.
	Apps []App
	// Tune adjusts the server's config before it starts (limits, poll
	// interval, timeouts...).
	Tune func(*server.Config)
	// Process runs the control plane as its own process ("runway serve"
	// from the running binary, which must handle that argument: see
	// cli.RunIfInvoked), so that it can be killed. Its log goes to Log and
	// to runway.log in Dir.
	Process bool
}

// Start creates the repositories and starts Runway. The state
// repository's webhook is configured (stateRepo.repo is StateRepoName):
// PushState delivers it.
func Start(ctx context.Context, opts Options) (*Harness, error) {
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "runway-test-"); err != nil {
			return nil, err
		}
	}
	h := &Harness{Dir: dir, Examples: opts.Examples, client: &http.Client{Timeout: 30 * time.Second}, apps: map[string]string{}}
	h.StateURL = filepath.Join(dir, "repos", "state.git")
	h.AppURL = filepath.Join(dir, "repos", AppName+".git")
	h.Secret = randomHex(16)
	cfg := server.Config{
		DataDir:       filepath.Join(dir, "data"),
		Listen:        "127.0.0.1:0",
		Gateway:       server.GatewayConfig{Listen: "127.0.0.1:0"},
		StateRepo:     server.RepoConfig{URL: h.StateURL, Repo: StateRepoName},
		WebhookSecret: h.Secret,
		// The tests leave nothing running behind them.
		StopDataPlaneOnExit: true,
	}
	apps := append([]App{{Name: AppName}}, opts.Apps...)
	for _, a := range apps {
		url := filepath.Join(dir, "repos", a.Name+".git")
		h.apps[a.Name] = url
		cfg.Apps = append(cfg.Apps, server.AppConfig{Name: a.Name, Repo: Owner + "/" + a.Name, URL: url, Paths: a.Paths})
	}
	if err := h.seed(ctx, apps); err != nil {
		return nil, err
	}
	cfg.PollInterval.Duration = 5 * time.Second
	cfg.ScrapeInterval.Duration = 500 * time.Millisecond
	modules, err := demo.StartModuleProxy()
	if err != nil {
		return nil, err
	}
	h.modules = modules
	modules.Configure(&cfg)
	// The harness chooses the admin token (rather than reading the one
	// Runway would generate), so that it is known before the server, or
	// its process, starts.
	cfg.API.AdminToken = randomHex(32)
	if opts.Tune != nil {
		opts.Tune(&cfg)
	}
	h.token = cfg.API.AdminToken
	if err := os.WriteFile(h.TokenFile(), []byte(h.token+"\n"), 0o600); err != nil {
		_ = h.modules.Close()
		return nil, fmt.Errorf("writing the API token: %w", err)
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h.cfg, h.logger, h.logw = cfg, logger, logw
	if opts.Process {
		err = h.startProcess(ctx)
	} else {
		err = h.serve(ctx)
	}
	if err != nil {
		_ = h.modules.Close()
		return nil, err
	}
	return h, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Harness) serve(ctx context.Context) error {
	srv, err := server.New(ctx, h.cfg, h.logger)
	if err != nil {
		return err
	}
	h.Server = srv
	h.apiAddr = srv.APIAddr()
	if h.gwAddr == "" {
		h.gwAddr = srv.GatewayAddr()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- srv.Run(runCtx) }()
	return nil
}

// Restart stops the control plane, leaving the data plane (gateway, apps,
// databases) serving, and starts a new one on the same data dir, which
// adopts it.
func (h *Harness) Restart(ctx context.Context) error {
	if h.proc != nil {
		return errors.New("restart: the control plane runs as a process; use Kill and Respawn")
	}
	h.Server.KeepDataPlane()
	if err := h.closeServer(); err != nil {
		return fmt.Errorf("stopping the control plane: %w", err)
	}
	return h.serve(ctx)
}

// Close stops Runway and everything it started.
func (h *Harness) Close() error {
	return errors.Join(h.closeServer(), h.modules.Close())
}

// closeServer stops the control plane (and, as configured, the data plane).
func (h *Harness) closeServer() error {
	if h.proc != nil {
		return h.stopProcess()
	}
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	err := <-h.done
	h.cancel = nil
	return err
}

// seed makes the state repository and one repository per app: the
// example's files, with the app's own name in runway.yaml.
func (h *Harness) seed(ctx context.Context, apps []App) error {
	if err := initRepo(ctx, h.StateURL, os.DirFS(filepath.Join(h.Examples, "state")), "initial state: database only"); err != nil {
		return err
	}
	src := os.DirFS(filepath.Join(h.Examples, "homelabping"))
	for _, a := range apps {
		files := src
		if a.Name != AppName {
			renamed, err := renameApp(src, a.Name)
			if err != nil {
				return err
			}
			files = renamed
		}
		if err := initRepo(ctx, h.apps[a.Name], files, a.Name+": ping answers pong"); err != nil {
			return err
		}
	}
	return nil
}

func initRepo(ctx context.Context, url string, files fs.FS, message string) error {
	if err := gitops.InitBare(url, "main"); err != nil {
		return err
	}
	if _, err := gitops.CommitDir(ctx, url, "main", files, message); err != nil {
		return fmt.Errorf("seeding %s: %w", url, err)
	}
	return nil
}

// renameApp copies the example app's files with its runway.yaml naming
// app instead.
func renameApp(src fs.FS, app string) (fs.FS, error) {
	out := fstest.MapFS{}
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		if p == "runway.yaml" {
			data = SpecNamed(data, app)
		}
		out[p] = &fstest.MapFile{Data: data, Mode: 0o644}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copying the example app as %s: %w", app, err)
	}
	return out, nil
}

// SpecNamed returns an app spec (runway.yaml) with its name line set to
// app.
func SpecNamed(spec []byte, app string) []byte {
	lines := strings.Split(string(spec), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "name:") {
			lines[i] = "name: " + app
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// AppRepo is the repository of a tracked app ("" if not tracked).
func (h *Harness) AppRepo(app string) string { return h.apps[app] }

// APIURL is Runway's API base URL.
func (h *Harness) APIURL() string { return "http://" + h.apiAddr }

// TokenFile holds the API's admin token (0600), for the CLI:
// RUNWAY_TOKEN_FILE=<it> runway pipelines --api <APIURL>.
func (h *Harness) TokenFile() string { return filepath.Join(h.Dir, "admin.token") }

// GatewayAddr is the gateway's host:port. It stays the same across
// Restart: the new control plane adopts the gateway.
func (h *Harness) GatewayAddr() string { return h.gwAddr }

// ProductionHost is the example app's production host name.
func (h *Harness) ProductionHost() string { return AppName + ".localhost" }

// Host is an app's host name in an environment.
func Host(app, env string) string {
	if env == "production" {
		return app + ".localhost"
	}
	return app + "." + env + ".localhost"
}

// CommitChange copies the files of examples/changes/<name> over the
// example app's repository and commits them; "" commits nothing new (an
// empty commit).
func (h *Harness) CommitChange(ctx context.Context, change, message string) (string, error) {
	return h.CommitChangeTo(ctx, AppName, change, message)
}

// CommitChangeTo is CommitChange to app's repository.
func (h *Harness) CommitChangeTo(ctx context.Context, app, change, message string) (string, error) {
	var src fs.FS = fstest.MapFS{}
	if change != "" {
		src = os.DirFS(filepath.Join(h.Examples, "changes", change))
	}
	return h.CommitFiles(ctx, app, src, message)
}

// CommitFiles copies files over app's repository and commits them.
func (h *Harness) CommitFiles(ctx context.Context, app string, files fs.FS, message string) (string, error) {
	url := h.apps[app]
	if url == "" {
		return "", fmt.Errorf("app %q is not tracked by the harness", app)
	}
	return gitops.CommitDir(ctx, url, "main", files, message)
}
