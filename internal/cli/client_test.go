package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/auth"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	userDir := filepath.Join(dir, "config")
	fileTok := writeFile(t, filepath.Join(dir, "flag.token"), "token-from-flag-file-0123\n")
	envFileTok := writeFile(t, filepath.Join(dir, "env.token"), "token-from-env-file-0123\n")
	dataDir := filepath.Join(dir, "data")
	writeFile(t, auth.Path(dataDir, auth.AdminToken), "token-from-data-dir-0123\n")
	serverCfg := writeFile(t, filepath.Join(dir, "runway.yaml"), "dataDir: "+dataDir+"\nlisten: 0.0.0.0:7171\n")
	serverCfgToken := writeFile(t, filepath.Join(dir, "runway-token.yaml"), "dataDir: "+dataDir+"\nlisten: 127.0.0.2:7272\napi: {adminToken: token-from-config-0123}\ntls: {certFile: /c, keyFile: /k}\n")
	unreadable := writeFile(t, filepath.Join(dir, "runway-nodata.yaml"), "dataDir: "+filepath.Join(dir, "nodata")+"\n")

	tests := []struct {
		name       string
		opts       clientOptions
		env        map[string]string
		userToken  bool // write the user config dir's token file
		wantToken  string
		wantSource string
		wantAPI    string
		wantErr    string
	}{
		{name: "nothing", wantAPI: defaultAPI},
		{name: "flag beats everything", opts: clientOptions{token: "token-from-flag-0123", tokenFile: fileTok, config: serverCfg},
			env: map[string]string{"RUNWAY_TOKEN": "token-from-env-0123"}, userToken: true, wantToken: "token-from-flag-0123", wantSource: "--token", wantAPI: "http://127.0.0.1:7171"},
		{name: "env beats files", opts: clientOptions{tokenFile: fileTok}, env: map[string]string{"RUNWAY_TOKEN": "token-from-env-0123", "RUNWAY_TOKEN_FILE": envFileTok},
			userToken: true, wantToken: "token-from-env-0123", wantSource: "RUNWAY_TOKEN", wantAPI: defaultAPI},
		{name: "token-file flag beats its env", opts: clientOptions{tokenFile: fileTok}, env: map[string]string{"RUNWAY_TOKEN_FILE": envFileTok},
			wantToken: "token-from-flag-file-0123", wantSource: fileTok, wantAPI: defaultAPI},
		{name: "token-file env beats the user's file", env: map[string]string{"RUNWAY_TOKEN_FILE": envFileTok}, userToken: true,
			wantToken: "token-from-env-file-0123", wantSource: envFileTok, wantAPI: defaultAPI},
		{name: "user's file beats the server config", opts: clientOptions{config: serverCfg}, userToken: true,
			wantToken: "token-from-user-dir-0123", wantSource: filepath.Join(userDir, "runway", "token"), wantAPI: "http://127.0.0.1:7171"},
		{name: "server config's data dir", opts: clientOptions{config: serverCfg},
			wantToken: "token-from-data-dir-0123", wantSource: auth.Path(dataDir, auth.AdminToken), wantAPI: "http://127.0.0.1:7171"},
		{name: "server config's own token and TLS", opts: clientOptions{config: serverCfgToken},
			wantToken: "token-from-config-0123", wantSource: serverCfgToken + " (api.adminToken)", wantAPI: "https://127.0.0.2:7272"},
		{name: "server config without a readable token", opts: clientOptions{config: unreadable}, wantAPI: "http://127.0.0.1:7070"},
		{name: "api flag beats env and config", opts: clientOptions{api: "http://flag:1/", config: serverCfg}, env: map[string]string{"RUNWAY_API": "http://env:2"},
			wantToken: "token-from-data-dir-0123", wantSource: auth.Path(dataDir, auth.AdminToken), wantAPI: "http://flag:1"},
		{name: "api env beats config", opts: clientOptions{config: serverCfg}, env: map[string]string{"RUNWAY_API": "http://env:2"},
			wantToken: "token-from-data-dir-0123", wantSource: auth.Path(dataDir, auth.AdminToken), wantAPI: "http://env:2"},
		{name: "missing token file", opts: clientOptions{tokenFile: filepath.Join(dir, "none")}, wantErr: "--token-file"},
		{name: "missing token file from env", env: map[string]string{"RUNWAY_TOKEN_FILE": filepath.Join(dir, "none")}, wantErr: "RUNWAY_TOKEN_FILE"},
		{name: "missing server config", opts: clientOptions{config: filepath.Join(dir, "none.yaml")}, wantErr: "reading config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(userDir)
			if tt.userToken {
				writeFile(t, filepath.Join(userDir, "runway", "token"), "token-from-user-dir-0123\n")
			}
			o := tt.opts
			o.getenv = func(k string) string { return tt.env[k] }
			o.configDir = func() (string, error) { return userDir, nil }
			c, err := o.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve() error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.token != tt.wantToken || c.source != tt.wantSource || c.api != tt.wantAPI {
				t.Fatalf("resolve() = token %q from %q, api %q; want %q from %q, %q", c.token, c.source, c.api, tt.wantToken, tt.wantSource, tt.wantAPI)
			}
		})
	}
}

// protectedAPI is a stand-in API behind the real auth middleware: it lists
// no pipelines and records abort bodies.
type protectedAPI struct {
	*httptest.Server
	mu        sync.Mutex
	aborted   []string
	cancelled []string
	eventsQ   []string
}

func newProtectedAPI(t *testing.T, admin string) *protectedAPI {
	t.Helper()
	tokens, err := auth.Load(t.TempDir(), admin, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &protectedAPI{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/pipelines", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "[]\n") })
	mux.HandleFunc("POST /api/v1/rollouts/{env}/{app}/abort", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Reason string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.aborted = append(a.aborted, r.PathValue("env")+"/"+r.PathValue("app")+": "+body.Reason)
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"aborting"}`)
	})
	mux.HandleFunc("POST /api/v1/pipelines/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Reason string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		if r.PathValue("id") == "done-1" {
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":"cancelling pipeline done-1: pipeline already ended"}`)
			return
		}
		a.mu.Lock()
		a.cancelled = append(a.cancelled, r.PathValue("id")+": "+body.Reason)
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"`+r.PathValue("id")+`","phase":"Cancelled"}`)
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.eventsQ = append(a.eventsQ, r.URL.RawQuery)
		a.mu.Unlock()
		io.WriteString(w, `[{"seq":8,"kind":"Pipeline","name":"web-1","reason":"Cancelled"}]`)
	})
	a.Server = httptest.NewServer(auth.Protect(mux, auth.Options{Tokens: tokens}))
	t.Cleanup(a.Close)
	return a
}

func TestCLIAgainstProtectedAPI(t *testing.T) {
	const admin = "the-admin-token-0123456789"
	api := newProtectedAPI(t, admin)
	dir := t.TempDir()
	userDir := filepath.Join(dir, "xdg")
	dataDir := filepath.Join(dir, "data")
	writeFile(t, auth.Path(dataDir, auth.AdminToken), admin+"\n")
	serverCfg := writeFile(t, filepath.Join(dir, "runway.yaml"), "dataDir: "+dataDir+"\nlisten: "+strings.TrimPrefix(api.URL, "http://")+"\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		wantOut string
		wantErr string
	}{
		{name: "no token says what to do", args: []string{"pipelines", "--api", api.URL}, code: 4,
			wantErr: "no API token: pass --token, set RUNWAY_TOKEN, or write it to " + filepath.Join(userDir, "runway", "token")},
		{name: "wrong token names its source", args: []string{"pipelines", "--api", api.URL, "--token", "wrong-token-0123456789"}, code: 4,
			wantErr: "the API refused the token from --token"},
		{name: "token from the env", args: []string{"pipelines", "--api", api.URL}, env: map[string]string{"RUNWAY_TOKEN": admin}, wantOut: "No pipelines."},
		{name: "token and URL from the server config", args: []string{"pipelines", "-c", serverCfg, "-o", "json"}, wantOut: "[]"},
		{name: "abort sends its reason as JSON", args: []string{"rollout", "abort", "web", "-c", serverCfg, "--reason", "too slow"}, wantOut: "production/web: aborting"},
		{name: "cancel sends its reason", args: []string{"cancel", "web-1", "-c", serverCfg, "--reason", "wrong branch"}, wantOut: "pipeline web-1: cancel requested (Cancelled)"},
		{name: "cancel of a done pipeline says why", args: []string{"cancel", "done-1", "-c", serverCfg}, code: 6, wantErr: "409 Conflict: cancelling pipeline done-1: pipeline already ended"},
		{name: "cancel needs an id", args: []string{"cancel", "-c", serverCfg}, code: 2, wantErr: "runway cancel takes ID"},
		{name: "events since", args: []string{"events", "-c", serverCfg, "--since", "7", "-o", "json"}, wantOut: `"reason": "Cancelled"`},
		{name: "events with a limit", args: []string{"events", "-c", serverCfg, "--limit", "5"}, wantOut: "Pipeline   web-1   Cancelled"},
		{name: "events without a token", args: []string{"events", "--api", api.URL}, code: 4, wantErr: "no API token"},
		{name: "token show finds the same token", args: []string{"token", "show", "-c", serverCfg}, wantOut: admin, wantErr: "token from " + auth.Path(dataDir, auth.AdminToken)},
		{name: "token show without a token", args: []string{"token", "show"}, code: 1, wantErr: "no API token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_CONFIG_HOME", userDir)
			for _, k := range []string{"RUNWAY_TOKEN", "RUNWAY_TOKEN_FILE", "RUNWAY_API"} {
				t.Setenv(k, tt.env[k])
			}
			var out, errb bytes.Buffer
			code := Run(context.Background(), tt.args, &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, tt.wantOut, tt.wantErr)
			}
			if tt.code != 0 && strings.Contains(errb.String(), admin) {
				t.Fatal("an error message holds the token")
			}
		})
	}
	if len(api.aborted) != 1 || api.aborted[0] != "production/web: too slow" {
		t.Fatalf("aborted = %q", api.aborted)
	}
	if len(api.cancelled) != 1 || api.cancelled[0] != "web-1: wrong branch" {
		t.Fatalf("cancelled = %q", api.cancelled)
	}
	if strings.Join(api.eventsQ, " ") != "since=7 limit=5&since=0" {
		t.Fatalf("events queries = %q", api.eventsQ)
	}
}

func TestTokenRotate(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Load(dataDir, "", ""); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, filepath.Join(dir, "runway.yaml"), "dataDir: "+dataDir+"\n")
	read := func(which string) string {
		tok, err := auth.ReadFile(auth.Path(dataDir, which))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name          string
		args          []string
		code          int
		changed       []string // tokens that must change
		showsAdmin    bool
		wantOut, want string
	}{
		{name: "admin, not a terminal", args: []string{"token", "rotate", "admin", "-c", cfg}, changed: []string{auth.AdminToken}, wantOut: auth.Path(dataDir, auth.AdminToken)},
		{name: "admin with --show", args: []string{"token", "rotate", "admin", "-c", cfg, "--show"}, changed: []string{auth.AdminToken}, showsAdmin: true},
		{name: "read", args: []string{"token", "rotate", "read", "-c", cfg, "--show"}, changed: []string{auth.ReadToken}, wantOut: auth.Path(dataDir, auth.ReadToken)},
		{name: "all by default", args: []string{"token", "rotate", "-c", cfg}, changed: []string{auth.AdminToken, auth.ReadToken}},
		{name: "unknown token", args: []string{"token", "rotate", "root", "-c", cfg}, code: 1, want: "want admin, read or all"},
		{name: "config without data dir", args: []string{"token", "rotate", "-c", writeFile(t, filepath.Join(dir, "empty.yaml"), "listen: 127.0.0.1:1\n")}, code: 1, want: "dataDir is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]string{auth.AdminToken: read(auth.AdminToken), auth.ReadToken: read(auth.ReadToken)}
			var out, errb bytes.Buffer
			code := Run(context.Background(), tt.args, &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
			}
			for _, which := range []string{auth.AdminToken, auth.ReadToken} {
				changed := read(which) != before[which]
				if want := slices.Contains(tt.changed, which); changed != want {
					t.Fatalf("%s token changed: %v, want %v", which, changed, want)
				}
			}
			if got := strings.Contains(out.String(), read(auth.AdminToken)); got != tt.showsAdmin {
				t.Fatalf("stdout shows the admin token: %v, want %v (%q)", got, tt.showsAdmin, out.String())
			}
			if strings.Contains(out.String(), read(auth.ReadToken)) {
				t.Fatal("stdout shows the read token")
			}
		})
	}
}
