package notify

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
)

// Formats of a receiver's request body.
const (
	// FormatJSON is the generic webhook body: a Notification as JSON
	// (kind runway.notification/v1).
	FormatJSON = "json"
	// FormatSlack is a Slack incoming-webhook body: text and blocks.
	FormatSlack = "slack"
)

// Limits on the configuration; every input is bounded.
const (
	// MaxReceivers is how many receivers a config may list.
	MaxReceivers = 32
	// MaxHeaders is how many headers a receiver may add.
	MaxHeaders = 16
	// DefaultTimeout bounds one delivery attempt when a receiver sets none.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout is the longest timeout a receiver may set.
	MaxTimeout = 2 * time.Minute
	// maxURL bounds a receiver's URL, in bytes.
	maxURL = 2048
	// maxHeaderValue bounds a header's value, in bytes.
	maxHeaderValue = 4096
)

// Config is the server config's notifications block:
//
//	notifications:
//	  receivers:
//	  - name: team-slack
//	    format: slack
//	    urlFile: /etc/runway/slack-webhook-url
//	    apps: [web]
//	    events: [pipeline.failed, rollout.aborted]
//
// The zero value sends nothing.
type Config struct {
	Receivers []Receiver `json:"receivers,omitempty"`
	// DashboardURL is the base URL at which people open Runway (its API
	// address as they reach it, e.g. https://runway.example.com): each
	// notification links to its pipeline's or rollout's dashboard page
	// under it. Empty: notifications carry no link.
	DashboardURL string `json:"dashboardURL,omitempty"`
}

// Receiver is one destination of notifications.
type Receiver struct {
	// Name names the receiver in logs and errors: a DNS label
	// (lower-case letters, digits, hyphens), unique in the config.
	Name string `json:"name"`
	// URL is where notifications are POSTed: http or https, with a host
	// and no user:password (send credentials in Headers). It is treated
	// as a secret (Slack's webhook URLs are): never logged, masked in
	// Runway's logs. Exactly one of URL and URLFile is set.
	URL string `json:"url,omitempty"`
	// URLFile is a file holding the URL (surrounding white space is
	// ignored), read when the server starts.
	URLFile string `json:"urlFile,omitempty"`
	// Format is the body's format: "json" (the default when empty) or
	// "slack".
	Format string `json:"format,omitempty"`
	// Apps limits the receiver to these apps' notifications. Empty: all
	// apps.
	Apps []string `json:"apps,omitempty"`
	// Events limits the receiver to these events (see AllEvents). Empty:
	// all of them.
	Events []string `json:"events,omitempty"`
	// Headers are added to every request, e.g. an Authorization header
	// whose value is read from a file.
	Headers []Header `json:"headers,omitempty"`
	// Timeout bounds one delivery attempt, from connecting to reading
	// the response. Zero: DefaultTimeout; at most MaxTimeout.
	Timeout appspec.Duration `json:"timeout,omitzero"`
}

// Header is one request header. Exactly one of Value and ValueFile is
// set; a value read from a file is treated as a secret and masked in
// Runway's logs.
type Header struct {
	Name      string `json:"name"`
	Value     string `json:"value,omitempty"`
	ValueFile string `json:"valueFile,omitempty"`
}

// reservedHeaders are set by the notifier and cannot be configured.
var reservedHeaders = []string{"Host", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "User-Agent"}

// Validate reports what is wrong with c, naming each field by its path
// under notifications ("notifications.receivers[0].url: ..."). It reads
// no file: a URL read from URLFile is checked by New. No error repeats a
// URL or a header value, which may be secrets.
func (c Config) Validate() []error {
	var errs []error
	if len(c.Receivers) > MaxReceivers {
		errs = append(errs, fmt.Errorf("notifications.receivers: %d receivers, at most %d", len(c.Receivers), MaxReceivers))
	}
	if c.DashboardURL != "" {
		if u, err := url.Parse(c.DashboardURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, fmt.Errorf("notifications.dashboardURL %q must be an http(s) URL without user:password", c.DashboardURL))
		}
	}
	seen := map[string]int{}
	for i, r := range c.Receivers {
		path := fmt.Sprintf("notifications.receivers[%d]", i)
		for _, err := range r.validate() {
			errs = append(errs, fmt.Errorf("%s.%w", path, err))
		}
		if j, dup := seen[r.Name]; dup && r.Name != "" {
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of receivers[%d]", path, r.Name, j))
		} else {
			seen[r.Name] = i
		}
	}
	return errs
}

// validate checks one receiver; each error starts with the field's name
// relative to the receiver.
func (r Receiver) validate() []error {
	var errs []error
	if !appspec.ValidName(r.Name) {
		errs = append(errs, fmt.Errorf("name: %q must be a DNS label (lower-case letters, digits and hyphens, at most 40)", r.Name))
	}
	switch {
	case r.URL == "" && r.URLFile == "":
		errs = append(errs, errors.New("url: one of url and urlFile is required"))
	case r.URL != "" && r.URLFile != "":
		errs = append(errs, errors.New("url: set url or urlFile, not both"))
	case r.URL != "":
		if err := checkURL(r.URL); err != nil {
			errs = append(errs, fmt.Errorf("url: %w", err))
		}
	}
	switch r.Format {
	case "", FormatJSON, FormatSlack:
	default:
		errs = append(errs, fmt.Errorf("format: %q is not json or slack", r.Format))
	}
	for j, app := range r.Apps {
		if !appspec.ValidName(app) {
			errs = append(errs, fmt.Errorf("apps[%d]: %q is not an app name (a DNS label)", j, app))
		}
	}
	for j, ev := range r.Events {
		if !slices.Contains(AllEvents, ev) {
			errs = append(errs, fmt.Errorf("events[%d]: unknown event %q (known: %s)", j, ev, strings.Join(AllEvents, ", ")))
		}
	}
	if len(r.Headers) > MaxHeaders {
		errs = append(errs, fmt.Errorf("headers: %d headers, at most %d", len(r.Headers), MaxHeaders))
	}
	for j, h := range r.Headers {
		if err := h.validate(); err != nil {
			errs = append(errs, fmt.Errorf("headers[%d].%w", j, err))
		}
	}
	if t := r.Timeout.Duration; t < 0 || t > MaxTimeout {
		errs = append(errs, fmt.Errorf("timeout: %s must be between 0 (the default, %s) and %s", t, DefaultTimeout, MaxTimeout))
	}
	return errs
}

// validate checks a header; the error starts with the field's name.
func (h Header) validate() error {
	if !validToken(h.Name) {
		return fmt.Errorf("name: %q is not a header name", h.Name)
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(h.Name, r) {
			return fmt.Errorf("name: %s is set by Runway", r)
		}
	}
	switch {
	case h.Value == "" && h.ValueFile == "":
		return errors.New("value: one of value and valueFile is required")
	case h.Value != "" && h.ValueFile != "":
		return errors.New("value: set value or valueFile, not both")
	}
	if err := checkHeaderValue(h.Value); err != nil {
		return fmt.Errorf("value: %w", err)
	}
	return nil
}

// checkURL checks a receiver's URL without repeating it.
func checkURL(s string) error {
	if len(s) > maxURL {
		return fmt.Errorf("longer than %d bytes", maxURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an http or https URL")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not hold a user or password (send credentials in headers)")
	}
	return nil
}

// checkHeaderValue rejects values that would break the request.
func checkHeaderValue(v string) error {
	if len(v) > maxHeaderValue {
		return fmt.Errorf("longer than %d bytes", maxHeaderValue)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return errors.New("holds a line break or NUL")
	}
	return nil
}

// validToken reports whether s is an HTTP token (a header name).
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return http.CanonicalHeaderKey(s) != ""
}
