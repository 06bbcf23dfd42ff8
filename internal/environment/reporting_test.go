package environment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/reporter"
)

// testsArtifact resolves every app to a pipeline artifact with tests.
type testsArtifact struct{}

func (testsArtifact) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	return build.Artifact{App: app, Version: version, Kind: kind, Dir: "/nonexistent",
		Spec: &appspec.Spec{Name: app, Tests: &appspec.Job{Command: []string{"./test"}}}}, nil
}

// tokenReports is a Reporter that hands out a token per submitted workflow.
type tokenReports struct {
	reports
	tokens map[string]string // workflow -> token; absent: not submitted
	err    error
}

func (r *tokenReports) Token(_ context.Context, workflow string) (string, error) {
	if r.err != nil {
		return "", r.err
	}
	token, ok := r.tokens[workflow]
	if !ok {
		return "", fmt.Errorf("workflow %q: %w", workflow, reporter.ErrNotFound)
	}
	return token, nil
}

func TestRunJobReporterVars(t *testing.T) {
	const url = "http://127.0.0.1:8080"
	token := strings.Repeat("ab", 32)
	tests := []struct {
		name     string
		reporter Reporter
		url      string
		env      string
		want     []string // the RUNWAY_REPORTER_* and RUNWAY_WORKFLOW vars
		wantErr  bool
	}{
		{
			name:     "submitted workflow",
			reporter: &tokenReports{tokens: map[string]string{"wf-v1": token}},
			url:      url + "/", env: "v1",
			want: []string{"RUNWAY_REPORTER_URL=" + url, "RUNWAY_REPORTER_TOKEN=" + token, "RUNWAY_WORKFLOW=wf-v1"},
		},
		{
			name:     "each environment its own workflow",
			reporter: &tokenReports{tokens: map[string]string{"wf-v1": token, "wf-v2": "other"}},
			url:      url, env: "v2",
			want: []string{"RUNWAY_REPORTER_URL=" + url, "RUNWAY_REPORTER_TOKEN=other", "RUNWAY_WORKFLOW=wf-v2"},
		},
		{
			name:     "the app's own workflow",
			reporter: &tokenReports{tokens: map[string]string{"wf-v3": token, "wf-app": "app's"}},
			url:      url, env: "v3",
			want: []string{"RUNWAY_REPORTER_URL=" + url, "RUNWAY_REPORTER_TOKEN=app's", "RUNWAY_WORKFLOW=wf-app"},
		},
		{name: "workflow not submitted", reporter: &tokenReports{tokens: map[string]string{}}, url: url, env: "v1"},
		{name: "no reporter URL", reporter: &tokenReports{tokens: map[string]string{"wf-v1": token}}, env: "v1"},
		{name: "reporter without tokens", reporter: &reports{}, url: url, env: "v1"},
		{name: "environment not reconciled", reporter: &tokenReports{tokens: map[string]string{"wf-v9": token}}, url: url, env: "v9"},
		{name: "store failure fails the job", reporter: &tokenReports{err: errors.New("disk gone")}, url: url, env: "v1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &fakeRuntime{}
			// Every environment runs web, so its job's URL is its route's.
			v1, v2, v3 := envManifest("v1"), envManifest("v2"), envManifest("v3")
			for _, m := range []*manifest.Manifest{v1, v2, v3} {
				m.Apps["web"] = appAt("v1")
			}
			v3.Apps["web"].DeployingWorkflowName = "wf-app"
			gw := gateway.New(gateway.Options{})
			c := New(newStateRepo(t, nil, v1, v2, v3), rt, testsArtifact{}, gw, tt.reporter, newFakeRollouts(),
				Options{GatewayAddr: "127.0.0.1:9090", ReporterURL: tt.url})
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := gw.SetRoute(gateway.Route{Env: "v9", App: "web", StableVersion: "v1", Stable: []gateway.Backend{{Addr: "127.0.0.1:1"}}}); err != nil {
				t.Fatal(err)
			}
			err := c.RunJob(t.Context(), tt.env, "web", "v1", "tests", io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("RunJob: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if len(rt.jobs) != 0 {
					t.Errorf("the job ran after an error: %+v", rt.jobs)
				}
				return
			}
			if len(rt.jobs) != 1 {
				t.Fatalf("%d jobs run, want 1", len(rt.jobs))
			}
			var got []string
			for _, v := range rt.jobs[0].Vars {
				if strings.HasPrefix(v, "RUNWAY_REPORTER_") || strings.HasPrefix(v, "RUNWAY_WORKFLOW=") {
					got = append(got, v)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("reporter vars %q, want %q", got, tt.want)
			}
		})
	}
}
