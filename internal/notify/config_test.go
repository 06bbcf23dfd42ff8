package notify

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/appspec"
)

func durationOf(d time.Duration) appspec.Duration { return appspec.Duration{Duration: d} }

func TestValidate(t *testing.T) {
	ok := Receiver{Name: "team", URL: "https://hooks.example.com/services/T/B/x"}
	with := func(edit func(*Receiver)) Config {
		r := ok
		edit(&r)
		return Config{Receivers: []Receiver{r}}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings, one an error, in order
	}{
		{"empty", Config{}, nil},
		{"minimal", Config{Receivers: []Receiver{ok}}, nil},
		{"full", with(func(r *Receiver) {
			r.Format, r.Apps, r.Events = FormatSlack, []string{"web", "api"}, AllEvents
			r.Headers = []Header{{Name: "Authorization", ValueFile: "/run/secrets/token"}, {Name: "X-Env", Value: "prod"}}
			r.Timeout = durationOf(30 * time.Second)
		}), nil},
		{"http url", with(func(r *Receiver) { r.URL = "http://10.0.0.5:8080/hook" }), nil},
		{"url file", with(func(r *Receiver) { r.URL, r.URLFile = "", "/etc/runway/slack" }), nil},
		{"no url", with(func(r *Receiver) { r.URL = "" }), []string{"notifications.receivers[0].url: one of url and urlFile is required"}},
		{"url and file", with(func(r *Receiver) { r.URLFile = "/x" }), []string{"notifications.receivers[0].url: set url or urlFile, not both"}},
		{"ftp", with(func(r *Receiver) { r.URL = "ftp://example.com/x" }), []string{"receivers[0].url: must be an http or https URL"}},
		{"relative", with(func(r *Receiver) { r.URL = "/hook" }), []string{"receivers[0].url: must be an http or https URL"}},
		{"no host", with(func(r *Receiver) { r.URL = "https:///hook" }), []string{"receivers[0].url: has no host"}},
		{"userinfo", with(func(r *Receiver) { r.URL = "https://bob:hunter2@example.com/" }), []string{"receivers[0].url: must not hold a user or password"}},
		{"unparsable", with(func(r *Receiver) { r.URL = "https://exa mple.com/%zz" }), []string{"receivers[0].url: not a URL"}},
		{"bad name", with(func(r *Receiver) { r.Name = "Team_Slack" }), []string{`receivers[0].name: "Team_Slack" must be a DNS label`}},
		{"format", with(func(r *Receiver) { r.Format = "teams" }), []string{`receivers[0].format: "teams" is not json or slack`}},
		{"app", with(func(r *Receiver) { r.Apps = []string{"web", "Web!"} }), []string{`receivers[0].apps[1]: "Web!" is not an app name`}},
		{"event", with(func(r *Receiver) { r.Events = []string{"pipeline.failed", "pipeline.started"} }), []string{`receivers[0].events[1]: unknown event "pipeline.started"`}},
		{"header name", with(func(r *Receiver) { r.Headers = []Header{{Name: "X Bad", Value: "v"}} }), []string{`receivers[0].headers[0].name: "X Bad" is not a header name`}},
		{"reserved header", with(func(r *Receiver) { r.Headers = []Header{{Name: "content-type", Value: "text/plain"}} }), []string{"receivers[0].headers[0].name: Content-Type is set by Runway"}},
		{"header value", with(func(r *Receiver) { r.Headers = []Header{{Name: "X-A", Value: "a\r\nB: c"}} }), []string{"receivers[0].headers[0].value: holds a line break"}},
		{"header no value", with(func(r *Receiver) { r.Headers = []Header{{Name: "X-A"}} }), []string{"receivers[0].headers[0].value: one of value and valueFile is required"}},
		{"timeout", with(func(r *Receiver) { r.Timeout = durationOf(time.Hour) }), []string{"receivers[0].timeout: 1h0m0s must be between 0"}},
		{"duplicate", Config{Receivers: []Receiver{ok, {Name: "other", URL: ok.URL}, ok}}, []string{`notifications.receivers[2].name: "team" is also the name of receivers[0]`}},
		{"too many", Config{Receivers: make([]Receiver, MaxReceivers+1)}, []string{"notifications.receivers: 33 receivers, at most 32"}},
		{"several", with(func(r *Receiver) { r.Name, r.Format = "", "xml" }), []string{"receivers[0].name", "receivers[0].format"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.cfg.Validate()
			if tc.name == "too many" {
				errs = errs[:1] // the empty receivers' own errors follow
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("Validate() = %v, want %d errors %q", errs, len(tc.want), tc.want)
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tc.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, err, tc.want[i])
				}
				if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hooks.example.com") {
					t.Errorf("error %d repeats the URL: %q", i, err)
				}
			}
		})
	}
}

// The config reads from YAML as the server reads it.
func TestConfigFromYAML(t *testing.T) {
	const doc = `
receivers:
- name: team-slack
  format: slack
  urlFile: /etc/runway/slack-url
  apps: [web]
  events: [pipeline.failed, rollout.aborted]
- name: audit
  url: https://audit.example.com/runway
  headers:
  - name: Authorization
    valueFile: /etc/runway/audit-token
  timeout: 5s
`
	var c Config
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if errs := c.Validate(); len(errs) != 0 {
		t.Fatal(errs)
	}
	if len(c.Receivers) != 2 || c.Receivers[0].Events[1] != RolloutAborted || c.Receivers[1].Timeout.Duration != 5*time.Second ||
		c.Receivers[1].Headers[0].ValueFile != "/etc/runway/audit-token" {
		t.Errorf("decoded %+v", c)
	}
}
