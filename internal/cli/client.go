package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/server"
)

// defaultAPI is the API URL when nothing names one: the server's default
// listen address.
const defaultAPI = "http://127.0.0.1:7070"

// clientOptions are the flags every API command takes. The token and the
// URL are looked for the way kubectl looks for its kubeconfig: see
// resolve.
type clientOptions struct {
	api       string
	token     string
	tokenFile string
	config    string // the server's config file, on the server's machine

	// getenv and configDir are os.Getenv and os.UserConfigDir, replaced in
	// tests.
	getenv    func(string) string
	configDir func() (string, error)
}

func addClientFlags(cmd *cobra.Command, o *clientOptions) { addClientFlagSet(cmd.Flags(), o) }

func addClientFlagSet(fs *pflag.FlagSet, o *clientOptions) {
	fs.StringVar(&o.api, "api", "", "Runway API URL (default: env RUNWAY_API, the server config's listen with -c, else "+defaultAPI+")")
	fs.StringVar(&o.token, "token", "", "API token (visible to other local users in the process list: prefer RUNWAY_TOKEN or a file)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the API token (default: env RUNWAY_TOKEN_FILE)")
	fs.StringVarP(&o.config, "config", "c", "", "the server's config file: its listen address and, if readable, <dataDir>/admin.token")
}

// client is a resolved API endpoint with its credentials.
type client struct {
	api, token string
	// source says where the token came from, for error messages; never
	// the token.
	source string
	// tokenHint is where a token may be written for the CLI to find it.
	tokenHint string
	http      *http.Client
}

// userTokenPath is the token file in the user's config dir.
func (o *clientOptions) userTokenPath() string {
	configDir := o.configDir
	if configDir == nil {
		configDir = os.UserConfigDir
	}
	dir, err := configDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "runway", "token")
}

func (o *clientOptions) env(key string) string {
	if o.getenv == nil {
		return os.Getenv(key)
	}
	return o.getenv(key)
}

// resolve finds the API URL and the token. The token is the first of:
// --token; RUNWAY_TOKEN; the file --token-file, else RUNWAY_TOKEN_FILE;
// the file runway/token in the user's config dir; with -c, the server
// config's api.adminToken or its <dataDir>/admin.token when readable. The
// URL is --api, RUNWAY_API, the server config's listen address with -c,
// or the default. No token is not an error here: the server may allow
// anonymous reads.
func (o *clientOptions) resolve() (*client, error) {
	c := &client{tokenHint: o.userTokenPath()}
	var cfg *server.Config
	if o.config != "" {
		loaded, err := server.LoadConfig(o.config)
		if err != nil {
			return nil, err
		}
		cfg = &loaded
	}
	var err error
	if c.token, c.source, err = o.findToken(cfg, c.tokenHint); err != nil {
		return nil, err
	}
	c.api = o.api
	if c.api == "" {
		c.api = o.env("RUNWAY_API")
	}
	if c.api == "" && cfg != nil {
		c.api = serverURL(*cfg)
	}
	if c.api == "" {
		c.api = defaultAPI
	}
	c.api = strings.TrimSuffix(c.api, "/")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg != nil && cfg.TLS.CertFile != "" {
		// A server with its own (self-signed) certificate: trust it too.
		if pem, err := os.ReadFile(cfg.TLS.CertFile); err == nil {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			pool.AppendCertsFromPEM(pem)
			transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: transport}
	return c, nil
}

func (o *clientOptions) findToken(cfg *server.Config, userPath string) (token, source string, err error) {
	if o.token != "" {
		return strings.TrimSpace(o.token), "--token", nil
	}
	if v := o.env("RUNWAY_TOKEN"); v != "" {
		return strings.TrimSpace(v), "RUNWAY_TOKEN", nil
	}
	file, what := o.tokenFile, "--token-file"
	if file == "" {
		file, what = o.env("RUNWAY_TOKEN_FILE"), "RUNWAY_TOKEN_FILE"
	}
	if file != "" {
		// Named explicitly: a file that cannot be read is an error.
		tok, err := auth.ReadFile(file)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", what, err)
		}
		return tok, file, nil
	}
	if userPath != "" {
		if tok, err := auth.ReadFile(userPath); err == nil {
			return tok, userPath, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
	}
	if cfg != nil {
		if cfg.API.AdminToken != "" {
			return cfg.API.AdminToken, o.config + " (api.adminToken)", nil
		}
		if cfg.DataDir != "" {
			path := auth.Path(cfg.DataDir, auth.AdminToken)
			if tok, err := auth.ReadFile(path); err == nil {
				return tok, path, nil
			}
		}
	}
	return "", "", nil
}

// serverURL is the API URL of a server config: its listen address (an
// unspecified host means this machine's loopback) and scheme.
func serverURL(cfg server.Config) string {
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:7070"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.TLS.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// getJSON reads path into v.
func (c *client) getJSON(ctx context.Context, path string, v any) error {
	answer, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(answer, v); err != nil {
		return fmt.Errorf("decoding the answer to GET %s: %w", path, err)
	}
	return nil
}

// maxAnswer bounds an answer of the API, in bytes.
const maxAnswer = 64 << 20

// do sends a request to path (with a JSON body when body is not nil) and
// returns the answer's body. A non-2xx answer is an *apiError, no answer
// an *unreachableError.
func (c *client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &unreachableError{err: err}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &unreachableError{err: fmt.Errorf("reading the answer to %s %s: %w", method, path, err)}
	}
	if resp.StatusCode/100 != 2 {
		return nil, c.answerError(resp.StatusCode, resp.Status, answer)
	}
	return answer, nil
}

// request is a request to path with the token.
func (c *client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.api+path, body)
	if err != nil {
		return nil, err
	}
	if method != http.MethodGet && method != http.MethodHead {
		// The API refuses a mutating request that is not JSON (a
		// browser's form cannot forge one).
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// answerError is the error of a non-2xx answer: its status and the API's
// message.
func (c *client) answerError(code int, status string, answer []byte) error {
	var e struct{ Error string }
	msg := status
	if json.Unmarshal(answer, &e) == nil && e.Error != "" {
		msg += ": " + e.Error
	}
	if code == http.StatusUnauthorized {
		return &apiError{status: code, msg: c.unauthorized(msg).Error()}
	}
	return &apiError{status: code, msg: msg}
}

func (c *client) unauthorized(msg string) error {
	if c.token == "" {
		hint := c.tokenHint
		if hint == "" {
			hint = "a file named by --token-file"
		}
		return fmt.Errorf("no API token: pass --token, set RUNWAY_TOKEN, or write it to %s (on the server's machine, -c runway.yaml reads <dataDir>/admin.token) (%s)", hint, msg)
	}
	return fmt.Errorf("the API refused the token from %s (rotated? `runway token show -c runway.yaml` on the server's machine prints the current one): %s", c.source, msg)
}

// jsonUnmarshal decodes an answer of the API.
func jsonUnmarshal(answer []byte, v any) error {
	if err := json.Unmarshal(answer, v); err != nil {
		return fmt.Errorf("decoding the API's answer: %w", err)
	}
	return nil
}
