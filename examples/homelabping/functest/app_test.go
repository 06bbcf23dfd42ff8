package functest

import (
	"context"
	"fmt"
	"io"
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

// app is the app under test, at the URL Runway gives.
type app struct {
	base   *url.URL
	client *http.Client
}

// newApp reads RUNWAY_APP_URL, the app's URL in the environment under
// test. It is a plain http://127.0.0.1:PORT URL, so any client reaches it
// as it is: no resolver or proxy settings needed.
func newApp(t *testing.T) *app {
	t.Helper()
	rawURL := os.Getenv("RUNWAY_APP_URL")
	if rawURL == "" {
		t.Fatal("RUNWAY_APP_URL is not set: Runway sets it to the app's URL in the environment under test")
	}
	base, err := url.Parse(rawURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		t.Fatalf("RUNWAY_APP_URL %q is not an http(s) URL (parse error: %v)", rawURL, err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	return &app{base: base, client: client}
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
