package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
)

const (
	testAdminToken = "test-admin-token-0123456789"
	testReadToken  = "test-read-token-0123456789"
)

// syncBuffer is a log destination the server and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testConfig is a valid config with a seeded state repo, an in-process
// gateway (no process to clean up) and loopback addresses.
func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state.git")
	if err := gitops.InitBare(state, "main"); err != nil {
		t.Fatal(err)
	}
	prod := `{"envname":"production","apps":{}}`
	if _, err := gitops.CommitDir(context.Background(), state, "main", fstest.MapFS{manifest.ProductionPath: {Data: []byte(prod)}}, "seed"); err != nil {
		t.Fatal(err)
	}
	return Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		Gateway:   GatewayConfig{Listen: "127.0.0.1:0", Mode: "inprocess"},
		StateRepo: RepoConfig{URL: state}, WebhookSecret: "0123456789abcdef-webhook"}
}

// startServer runs a server on cfg until the test ends; its log goes to
// the returned buffer.
func startServer(t *testing.T, cfg Config) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	serveFor(t, srv)
	return srv, logs
}

func TestAPIProtected(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.AdminToken, cfg.API.ReadToken = testAdminToken, testReadToken
	srv, _ := startServer(t, cfg)
	base := "http://" + srv.APIAddr()
	tests := []struct {
		name, method, path, token, contentType, host string
		body                                         string
		want                                         int
	}{
		{name: "healthz is open", method: "GET", path: "/healthz", want: 200},
		{name: "pipelines need a token", method: "GET", path: "/api/v1/pipelines", want: 401},
		{name: "pipelines with the read token", method: "GET", path: "/api/v1/pipelines", token: testReadToken, want: 200},
		{name: "metrics need a token", method: "GET", path: "/metrics", want: 401},
		{name: "prometheus needs a token", method: "GET", path: "/prometheus/api/v1/query?query=up", want: 401},
		{name: "prometheus with the read token", method: "GET", path: "/prometheus/api/v1/query?query=up", token: testReadToken, want: 200},
		{name: "prometheus POST form with the read token", method: "POST", path: "/prometheus/api/v1/query", token: testReadToken, contentType: "application/x-www-form-urlencoded", body: "query=up", want: 200},
		{name: "expectations need a token", method: "GET", path: "/api/v1/expectations/w", want: 401},
		{name: "an expectation's token needs the admin token", method: "GET", path: "/api/v1/expectations/w/token", token: testReadToken, want: 403},
		{name: "promote without a token", method: "POST", path: "/api/v1/rollouts/production/web/promote?full=true", contentType: "application/json", want: 401},
		{name: "promote with the read token", method: "POST", path: "/api/v1/rollouts/production/web/promote", token: testReadToken, contentType: "application/json", want: 403},
		{name: "promote as a form", method: "POST", path: "/api/v1/rollouts/production/web/promote", token: testAdminToken, contentType: "application/x-www-form-urlencoded", want: 415},
		{name: "promote with the admin token reaches the API", method: "POST", path: "/api/v1/rollouts/production/web/promote", token: testAdminToken, contentType: "application/json", want: 404},
		{name: "abort body over the limit", method: "POST", path: "/api/v1/rollouts/production/web/abort", token: testAdminToken, contentType: "application/json", body: `{"reason":"` + strings.Repeat("x", apiBodyLimit) + `"}`, want: 413},
		{name: "submit needs the admin token", method: "POST", path: "/workflow/submit", contentType: "application/json", body: `{}`, want: 401},
		{name: "preflight", method: "OPTIONS", path: "/api/v1/pipelines", want: 403},
		{name: "rebound host", method: "GET", path: "/api/v1/pipelines", token: testAdminToken, host: "evil.example:7070", want: 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, body, tt.want)
			}
		})
	}
	// The webhook checks its caller itself (its HMAC): no token needed,
	// and the answer is the webhook's, not the API's 401.
	req, _ := http.NewRequest("POST", base+"/webhooks/github", strings.NewReader(`{}`))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("WWW-Authenticate") != "" || resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted {
		t.Fatalf("webhook with a bad signature: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if s := srv.apiSrv; s.ReadHeaderTimeout != 10*time.Second || s.ReadTimeout != 60*time.Second || s.WriteTimeout != 60*time.Second ||
		s.IdleTimeout != 120*time.Second || s.MaxHeaderBytes != 64<<10 {
		t.Fatalf("API server bounds: %+v", s)
	}
}

// TestTokenFilesAndWarnings starts a server without configured tokens on
// all interfaces with anonymous reads: it writes the token files 0600, logs
// where they are (never what), and warns about both exposures.
func TestTokenFilesAndWarnings(t *testing.T) {
	cfg := testConfig(t)
	cfg.Listen = "0.0.0.0:0"
	cfg.API.AnonymousRead = true
	srv, logs := startServer(t, cfg)
	admin, err := auth.ReadFile(auth.Path(cfg.DataDir, auth.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{auth.AdminToken, auth.ReadToken} {
		fi, err := os.Stat(auth.Path(cfg.DataDir, which))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s token file: %v %v", which, fi, err)
		}
	}
	log := logs.String()
	for _, want := range []string{"beyond loopback without TLS", "api.anonymousRead is on", auth.Path(cfg.DataDir, auth.AdminToken)} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	read, _ := auth.ReadFile(auth.Path(cfg.DataDir, auth.ReadToken))
	if strings.Contains(log, admin) || strings.Contains(log, read) {
		t.Fatal("the log holds a token")
	}
	// Anonymous reads are on, mutations still need the admin token, and
	// a rotated token is taken without a restart.
	_, port, _ := net.SplitHostPort(srv.APIAddr())
	base := "http://127.0.0.1:" + port
	if got := status(t, "GET", base+"/api/v1/pipelines", ""); got != 200 {
		t.Fatalf("anonymous read: %d", got)
	}
	if got := status(t, "POST", base+"/api/v1/rollouts/production/web/retry", admin); got != 404 {
		t.Fatalf("retry with the admin token: %d, want the API's 404", got)
	}
	if _, err := auth.Rotate(cfg.DataDir, auth.AdminToken); err != nil {
		t.Fatal(err)
	}
	if got := status(t, "POST", base+"/api/v1/rollouts/production/web/retry", admin); got != 401 {
		t.Fatalf("retry with the rotated-out admin token: %d, want 401", got)
	}
}

func status(t *testing.T, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLoopbackListen(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:7070": true, "[::1]:7070": true, "localhost:7070": true, "127.3.0.1:1": true,
		"0.0.0.0:7070": false, ":7070": false, "[::]:7070": false, "192.168.1.2:7070": false, "runway.example:7070": false, "bad": false,
	} {
		if got := loopbackListen(listen); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", listen, got, want)
		}
	}
}

// TestAPIOverTLS serves the API with a certificate made here.
func TestAPIOverTLS(t *testing.T) {
	cfg := testConfig(t)
	certPEM, keyPEM := selfSigned(t)
	dir := t.TempDir()
	cfg.TLS = TLSConfig{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(cfg.TLS.CertFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLS.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.API.ReadToken = testReadToken
	srv, _ := startServer(t, cfg)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", "https://"+srv.APIAddr()+"/api/v1/pipelines", nil)
	req.Header.Set("Authorization", "Bearer "+testReadToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("over TLS: %d %q (TLS %v)", resp.StatusCode, body, resp.TLS != nil)
	}
	// Plain HTTP on the TLS listener gets no API answer.
	if resp, err := http.Get("http://" + srv.APIAddr() + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP answered %q", b)
		}
	}

	// A key that does not match is refused at start, without a panic.
	_, otherKey := selfSigned(t)
	if err := os.WriteFile(cfg.TLS.KeyFile, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2 := testConfig(t)
	cfg2.TLS = cfg.TLS
	if _, err := New(context.Background(), cfg2, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("New with a mismatched key: %v", err)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and its key, PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "runway test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TestNewFailsLateWithoutPanic makes New fail after the config is valid,
// at several points: it returns an error (no panic in Close) and leaves
// nothing listening.
func TestNewFailsLateWithoutPanic(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"occupied API address", func(c *Config) { c.Listen = busy.Addr().String() }, "listening for the API"},
		{"occupied gateway address", func(c *Config) { c.Gateway.Listen = busy.Addr().String() }, "gateway"},
		{"unreadable state repo", func(c *Config) { c.StateRepo.URL = filepath.Join(t.TempDir(), "missing.git") }, ""},
		{"missing TLS files", func(c *Config) { c.TLS = TLSConfig{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"} }, "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.change(&cfg)
			var srv *Server
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("New panicked: %v", p)
					}
				}()
				srv, err = New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			}()
			if err == nil {
				srv.Close()
				t.Fatal("New succeeded")
			}
			if srv != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, %v; want nil and an error about %q", srv, err, tt.want)
			}
			if (*Server)(nil).Close() != nil {
				t.Fatal("Close of a nil server failed")
			}
		})
	}
}
