// Package demo runs the whole method end to end on one machine: it makes a
// state repository and an app repository from examples/, starts Runway,
// deploys the first version of homelabping, pushes a change with a signed
// GitHub webhook and follows it through staging and the canary to
// production. Its Harness is also what the end-to-end tests drive: only
// public interfaces (git, webhook, API, gateway).
package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/server"
)

// AppName and RepoName are the example app's names.
const (
	AppName  = "homelabping"
	RepoName = "homelab/homelabping"
)

// Harness is a Runway with its repositories in a temporary directory.
type Harness struct {
	Dir      string
	StateURL string
	AppURL   string
	Secret   string
	Examples string
	Server   *server.Server
	client   *http.Client
	cfg      server.Config
	gwAddr   string
	logger   *slog.Logger
	// stagingAddrs are replica addresses seen per staging environment.
	stagingAddrs map[string][]string
	cancel       context.CancelFunc
	done         chan error
	apiAddr      string
	// proc is the control plane when it runs as its own process.
	proc *controlPlane
	logw io.Writer
	// modules serves Go modules to the sandboxed builds; nil if none.
	modules *moduleProxy
	// token is the API's admin token, sent on every API call.
	token string
}

// Options configure a harness.
type Options struct {
	// Examples is the examples/ directory of the Runway source tree.
	Examples string
	// Dir is where everything goes; "" makes a temporary directory.
	Dir string
	// Log receives the server's log. Nil discards it.
	Log io.Writer
	// Tune adjusts the server's config before it starts.
	Tune func(*server.Config)
	// Process runs the control plane as its own process ("runway serve"
	// from the running binary, which must handle that argument: see
	// RunIfInvoked), so that it can be killed. Its log goes to Log and to
	// runway.log in Dir.
	Process bool
}

// Start creates the repositories and starts Runway.
func Start(ctx context.Context, opts Options) (*Harness, error) {
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "runway-demo-"); err != nil {
			return nil, err
		}
	}
	h := &Harness{Dir: dir, Examples: opts.Examples, client: &http.Client{Timeout: 30 * time.Second}, stagingAddrs: map[string][]string{}}
	h.StateURL = filepath.Join(dir, "repos", "state.git")
	h.AppURL = filepath.Join(dir, "repos", "homelabping.git")
	if err := h.seed(ctx); err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	h.Secret = hex.EncodeToString(secret)
	cfg := server.Config{
		DataDir:       filepath.Join(dir, "data"),
		Listen:        "127.0.0.1:0",
		Gateway:       server.GatewayConfig{Listen: "127.0.0.1:0"},
		StateRepo:     server.RepoConfig{URL: h.StateURL},
		WebhookSecret: h.Secret,
		Apps:          []server.AppConfig{{Name: AppName, Repo: RepoName, URL: h.AppURL}},
		// The demo and the tests leave nothing running behind them.
		StopDataPlaneOnExit: true,
	}
	cfg.PollInterval.Duration = 5 * time.Second
	cfg.ScrapeInterval.Duration = 500 * time.Millisecond
	modules, err := startModuleProxy()
	if err != nil {
		return nil, err
	}
	h.modules = modules
	modules.configure(&cfg)
	// The harness chooses the admin token (rather than reading the one
	// Runway would generate), so that it is known before the server, or
	// its process, starts.
	token := make([]byte, 32)
	_, _ = rand.Read(token)
	cfg.API.AdminToken = hex.EncodeToString(token)
	if opts.Tune != nil {
		opts.Tune(&cfg)
	}
	h.token = cfg.API.AdminToken
	if err := os.WriteFile(h.TokenFile(), []byte(h.token+"\n"), 0o600); err != nil {
		_ = h.modules.close()
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
		_ = h.modules.close()
		return nil, err
	}
	return h, nil
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
	return errors.Join(h.closeServer(), h.modules.close())
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

func (h *Harness) seed(ctx context.Context) error {
	for _, r := range []struct{ url, src, msg string }{
		{h.StateURL, filepath.Join(h.Examples, "state"), "initial state: database only"},
		{h.AppURL, filepath.Join(h.Examples, "homelabping"), "homelabping: ping answers pong"},
	} {
		if err := gitops.InitBare(r.url, "main"); err != nil {
			return err
		}
		if _, err := gitops.CommitDir(ctx, r.url, "main", os.DirFS(r.src), r.msg); err != nil {
			return fmt.Errorf("seeding %s: %w", r.url, err)
		}
	}
	return nil
}

// APIURL is Runway's API base URL.
func (h *Harness) APIURL() string { return "http://" + h.apiAddr }

// TokenFile holds the API's admin token (0600), for the CLI:
// RUNWAY_TOKEN_FILE=<it> runway pipelines --api <APIURL>.
func (h *Harness) TokenFile() string { return filepath.Join(h.Dir, "admin.token") }

// Token is the API's admin token.
func (h *Harness) Token() string { return h.token }

// Authorize adds the admin token to an API request, and the JSON content
// type the API requires of a mutating one.
func (h *Harness) Authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+h.token)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json")
	}
}

// API sends an authorized request to an API path (body may be nil) and
// returns the answer's status and body.
func (h *Harness) API(ctx context.Context, method, path string, body io.Reader) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.APIURL()+path, body)
	if err != nil {
		return 0, "", err
	}
	h.Authorize(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// GatewayAddr is the gateway's host:port. It stays the same across
// Restart: the new control plane adopts the gateway.
func (h *Harness) GatewayAddr() string { return h.gwAddr }

// ProductionHost is the example app's production host name.
func (h *Harness) ProductionHost() string { return AppName + ".localhost" }

// CommitChange copies the files of examples/changes/<name> over the app
// repository and commits them; "" commits nothing new (an empty commit).
func (h *Harness) CommitChange(ctx context.Context, change, message string) (string, error) {
	var src fs.FS = fstest.MapFS{}
	if change != "" {
		src = os.DirFS(filepath.Join(h.Examples, "changes", change))
	}
	return gitops.CommitDir(ctx, h.AppURL, "main", src, message)
}

// PushResponse is Runway's answer to a webhook.
type PushResponse struct {
	Status   int
	Body     string
	Pipeline string `json:"pipeline"`
}

// Push delivers a signed GitHub push webhook for commit on branch.
func (h *Harness) Push(ctx context.Context, branch, commit, message string) (PushResponse, error) {
	return h.PushSigned(ctx, branch, commit, message, h.Secret)
}

// PushSigned is Push with the signature made from secret.
func (h *Harness) PushSigned(ctx context.Context, branch, commit, message, secret string) (PushResponse, error) {
	payload, err := json.Marshal(map[string]any{
		"ref": "refs/heads/" + branch, "before": strings.Repeat("0", 40), "after": commit, "deleted": false,
		"repository":  map[string]any{"name": AppName, "full_name": RepoName, "clone_url": "https://github.com/" + RepoName + ".git", "owner": map[string]any{"login": "homelab"}},
		"head_commit": map[string]any{"id": commit, "message": message},
		"pusher":      map[string]any{"name": "demo"},
	})
	if err != nil {
		return PushResponse{}, err
	}
	return h.Deliver(ctx, "push", payload, secret)
}

// Deliver posts a webhook body with its signature headers.
func (h *Harness) Deliver(ctx context.Context, event string, payload []byte, secret string) (PushResponse, error) {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.APIURL()+"/webhooks/github", bytes.NewReader(payload))
	if err != nil {
		return PushResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", hex.EncodeToString(id))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := h.client.Do(req)
	if err != nil {
		return PushResponse{}, fmt.Errorf("delivering webhook: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := PushResponse{Status: resp.StatusCode, Body: string(body)}
	_ = json.Unmarshal(body, &out)
	return out, nil
}

// Pipeline reads a pipeline through the API.
func (h *Harness) Pipeline(ctx context.Context, id string) (*pipeline.Pipeline, error) {
	var p pipeline.Pipeline
	if err := h.GetJSON(ctx, "/api/v1/pipelines/"+id, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// GetJSON reads an API path into v.
func (h *Harness) GetJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.APIURL()+path, nil)
	if err != nil {
		return err
	}
	h.Authorize(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// WaitPipeline polls the pipeline until it ends, calling onChange with
// every new state.
func (h *Harness) WaitPipeline(ctx context.Context, id string, onChange func(*pipeline.Pipeline)) (*pipeline.Pipeline, error) {
	var last string
	for {
		p, err := h.Pipeline(ctx, id)
		if err != nil {
			return nil, err
		}
		if key := stateKey(p); key != last {
			last = key
			if onChange != nil {
				onChange(p)
			}
		}
		if p.Phase.Done() {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func stateKey(p *pipeline.Pipeline) string {
	var b strings.Builder
	b.WriteString(string(p.Phase))
	for _, s := range p.Steps {
		b.WriteString(string(s.Phase))
	}
	return b.String()
}

// Get fetches path from an app through the gateway with the given Host.
func (h *Harness) Get(ctx context.Context, host, path string) (status int, body, version string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.GatewayAddr()+path, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = host
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Runway-Version"), nil
}

// Listening reports whether something accepts connections on addr.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
