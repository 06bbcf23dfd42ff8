package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// runway is the demo's Runway: the control plane in this process, its
// state and app repositories in dir, driven like a user would, through git,
// a signed webhook, the API and the gateway.
type runway struct {
	dir      string
	examples string
	stateURL string
	appURL   string
	secret   string
	token    string
	cfg      server.Config
	srv      *server.Server
	client   *http.Client
	modules  *ModuleProxy
	cancel   context.CancelFunc
	done     chan error
	// stagingAddrs are replica addresses seen per staging environment.
	stagingAddrs map[string][]string
	// live shows a followed pipeline as a view redrawn in place.
	live bool
}

// startRunway seeds the repositories from examples/ into dir and starts Runway.
func startRunway(ctx context.Context, examples, dir string, logw io.Writer) (*runway, error) {
	r := &runway{
		dir: dir, examples: examples, client: &http.Client{Timeout: 30 * time.Second}, stagingAddrs: map[string][]string{},
		stateURL: filepath.Join(dir, "repos", "state.git"), appURL: filepath.Join(dir, "repos", "homelabping.git"),
		secret: randomHex(16), token: randomHex(32),
	}
	for _, repo := range []struct{ url, src, msg string }{
		{r.stateURL, filepath.Join(examples, "state"), "initial state: database only"},
		{r.appURL, filepath.Join(examples, "homelabping"), "homelabping: ping answers pong"},
	} {
		if err := gitops.InitBare(repo.url, "main"); err != nil {
			return nil, err
		}
		if _, err := gitops.CommitDir(ctx, repo.url, "main", os.DirFS(repo.src), repo.msg); err != nil {
			return nil, fmt.Errorf("seeding %s: %w", repo.url, err)
		}
	}
	r.cfg = server.Config{
		DataDir:       filepath.Join(dir, "data"),
		Listen:        "127.0.0.1:0",
		Gateway:       server.GatewayConfig{Listen: "127.0.0.1:0"},
		StateRepo:     server.RepoConfig{URL: r.stateURL},
		WebhookSecret: r.secret,
		Apps:          []server.AppConfig{{Name: AppName, Repo: RepoName, URL: r.appURL}},
		// The demo leaves nothing running behind it.
		StopDataPlaneOnExit: true,
	}
	r.cfg.PollInterval.Duration = 5 * time.Second
	r.cfg.ScrapeInterval.Duration = 500 * time.Millisecond
	r.cfg.API.AdminToken = r.token
	if err := os.WriteFile(r.tokenFile(), []byte(r.token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing the API token: %w", err)
	}
	modules, err := StartModuleProxy()
	if err != nil {
		return nil, err
	}
	r.modules = modules
	modules.Configure(&r.cfg)
	logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.New(ctx, r.cfg, logger)
	if err != nil {
		_ = modules.Close()
		return nil, err
	}
	r.srv = srv
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- srv.Run(runCtx) }()
	return r, nil
}

// close stops Runway and everything it started.
func (r *runway) close() error {
	r.cancel()
	err := <-r.done
	if cerr := r.modules.Close(); err == nil {
		err = cerr
	}
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *runway) apiURL() string         { return "http://" + r.srv.APIAddr() }
func (r *runway) gatewayAddr() string    { return r.srv.GatewayAddr() }
func (r *runway) tokenFile() string      { return filepath.Join(r.dir, "admin.token") }
func (r *runway) productionHost() string { return AppName + ".localhost" }

// workDir is the work directory of the demo's Runway: its artifacts,
// builds and environments.
func (r *runway) workDir() string { return filepath.Clean(r.cfg.DataDir) + "-work" }

// commitChange copies the files of examples/changes/<name> over the app
// repository and commits them; "" commits nothing new (an empty commit).
func (r *runway) commitChange(ctx context.Context, change, message string) (string, error) {
	var src fs.FS = emptyFS{}
	if change != "" {
		src = os.DirFS(filepath.Join(r.examples, "changes", change))
	}
	return gitops.CommitDir(ctx, r.appURL, "main", src, message)
}

// emptyFS is a directory with nothing in it: an empty commit's files.
type emptyFS struct{}

func (emptyFS) Open(name string) (fs.File, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return emptyDir{}, nil
}

type emptyDir struct{}

func (emptyDir) Stat() (fs.FileInfo, error)         { return emptyDirInfo{}, nil }
func (emptyDir) Read([]byte) (int, error)           { return 0, io.EOF }
func (emptyDir) Close() error                       { return nil }
func (emptyDir) ReadDir(int) ([]fs.DirEntry, error) { return nil, nil }

type emptyDirInfo struct{}

func (emptyDirInfo) Name() string       { return "." }
func (emptyDirInfo) Size() int64        { return 0 }
func (emptyDirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (emptyDirInfo) ModTime() time.Time { return time.Time{} }
func (emptyDirInfo) IsDir() bool        { return true }
func (emptyDirInfo) Sys() any           { return nil }

// push delivers a signed GitHub push webhook for commit on main.
func (r *runway) push(ctx context.Context, commit, message string) (id string, err error) {
	payload, err := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": commit, "deleted": false,
		"repository":  map[string]any{"name": AppName, "full_name": RepoName, "clone_url": "https://github.com/" + RepoName + ".git", "owner": map[string]any{"login": "homelab"}},
		"head_commit": map[string]any{"id": commit, "message": message},
		"pusher":      map[string]any{"name": "demo"},
	})
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, []byte(r.secret))
	mac.Write(payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.apiURL()+"/webhooks/github", bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", randomHex(16))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := r.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("delivering webhook: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Pipeline string `json:"pipeline"`
	}
	_ = json.Unmarshal(body, &out)
	if resp.StatusCode != http.StatusAccepted || out.Pipeline == "" {
		return "", fmt.Errorf("webhook answered %d %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return out.Pipeline, nil
}

// getJSON reads an API path into v.
func (r *runway) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.apiURL()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
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

// waitPipeline polls the pipeline until it ends, calling onChange with
// every new state.
func (r *runway) waitPipeline(ctx context.Context, id string, onChange func(*pipeline.Pipeline)) (*pipeline.Pipeline, error) {
	var last string
	for {
		var p pipeline.Pipeline
		if err := r.getJSON(ctx, "/api/v1/pipelines/"+id, &p); err != nil {
			return nil, err
		}
		key := string(p.Phase)
		for _, s := range p.Steps {
			key += string(s.Phase)
		}
		if key != last {
			last = key
			onChange(&p)
		}
		// Finished is set whatever the final phase is called (Succeeded,
		// Failed, Superseded, Cancelled).
		if p.Phase.Done() || !p.Finished.IsZero() {
			return &p, nil
		}
		select {
		case <-ctx.Done():
			return &p, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// get fetches path from an app through the gateway with the given Host.
func (r *runway) get(ctx context.Context, host, path string) (status int, body, version string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.gatewayAddr()+path, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = host
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Runway-Version"), nil
}
