package functest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// maxRetries is how often a failing request is retried: the environment
// may have come up just now.
const maxRetries = 3

// app is the app under test, reached through Runway's gateway.
type app struct {
	base   *url.URL
	client *http.Client
}

// newApp reads the environment Runway sets. Every request dials the
// gateway, whatever the URL's host resolves to (*.localhost names may not
// resolve), and keeps the URL's Host so the gateway can route it.
func newApp(t *testing.T) *app {
	t.Helper()
	rawURL, gateway := os.Getenv("RUNWAY_APP_URL"), os.Getenv("RUNWAY_GATEWAY_ADDR")
	if rawURL == "" || gateway == "" {
		t.Fatalf("RUNWAY_APP_URL (%q) and RUNWAY_GATEWAY_ADDR (%q) must both be set: "+
			"Runway sets them to the app's URL and the gateway's host:port", rawURL, gateway)
	}
	base, err := url.Parse(rawURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		t.Fatalf("RUNWAY_APP_URL %q is not an http(s) URL (parse error: %v)", rawURL, err)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, gateway)
		},
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &app{base: base, client: &http.Client{Transport: transport, Timeout: 10 * time.Second}}
}

// response is an answer read in full.
type response struct {
	status      int
	contentType string
	body        string
}

// get requests path, retrying transport errors and 5xx answers up to
// maxRetries times with a growing backoff. It returns the last answer, so a
// persistent 5xx fails the caller's status check with its body.
func (a *app) get(t *testing.T, path string) response {
	t.Helper()
	u := a.base.JoinPath(path).String()
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		resp, err := a.getOnce(t.Context(), u)
		switch {
		case err == nil && resp.status < 500:
			return resp
		case attempt == maxRetries && err != nil:
			t.Fatalf("GET %s failed after %d retries: %v", u, maxRetries, err)
		case attempt == maxRetries:
			return resp
		case err == nil:
			err = fmt.Errorf("status %d, body %q", resp.status, resp.body)
		}
		t.Logf("GET %s: %v; retrying in %s", u, err, backoff)
		select {
		case <-time.After(backoff):
		case <-t.Context().Done():
			t.Fatalf("GET %s: %v", u, t.Context().Err())
		}
		backoff *= 2
	}
}

func (a *app) getOnce(ctx context.Context, u string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return response{}, fmt.Errorf("building request: %w", err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("reading body: %w", err)
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(body)}, nil
}

// mediaType is a Content-Type without its parameters.
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(strings.ToLower(mt))
}
