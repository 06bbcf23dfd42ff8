package argocd

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// hookRig is a real reporter on loopback and the example's export whose
// hooks report to it.
type hookRig struct {
	rep   *reporter.Reporter
	files []File
}

func newHookRig(t *testing.T) *hookRig {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rep := reporter.New(db, nil)
	srv := httptest.NewServer(rep.Handler())
	t.Cleanup(srv.Close)
	o, _ := exampleOptions(t)
	o.ReporterURL = srv.URL
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	return &hookRig{rep: rep, files: files}
}

// runHook runs, on this machine with sh and curl, the command of app's
// hook Job (PostSync or SyncFail) as Helm renders it for values, with
// only the Job's environment: its literal values and, for the token, the
// Secret's value from secret (by key), as the kubelet would give them.
func (r *hookRig) runHook(t *testing.T, app, hook string, values map[string]any, secret map[string]string) (string, error) {
	t.Helper()
	objs, err := helmTemplate(r.files, "charts/"+app, values)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		meta := obj["metadata"].(map[string]any)
		ann, _ := meta["annotations"].(map[string]any)
		if obj["kind"] != "Job" || ann["argocd.argoproj.io/hook"] != hook || !strings.Contains(meta["name"].(string), "-report-") {
			continue
		}
		pod := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		c := pod["containers"].([]any)[0].(map[string]any)
		env := []string{"PATH=" + os.Getenv("PATH")}
		for _, e := range c["env"].([]any) {
			e := e.(map[string]any)
			value, _ := e["value"].(string)
			if from, ok := e["valueFrom"].(map[string]any); ok {
				ref := from["secretKeyRef"].(map[string]any)
				if ref["name"] != ReporterSecret {
					t.Fatalf("token from Secret %v, want %s", ref["name"], ReporterSecret)
				}
				v, ok := secret[ref["key"].(string)]
				if !ok {
					t.Fatalf("the Secret has no key %v (the pod would wait for it)", ref["key"])
				}
				value = v
			}
			env = append(env, e["name"].(string)+"="+value)
		}
		cmdline := c["command"].([]any)
		ctx, cancel := context.WithTimeout(t.Context(), 30e9)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", cmdline[2].(string))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Fatalf("no %s report hook rendered for %s", hook, app)
	return "", nil
}

func TestReportHooks(t *testing.T) {
	const workflow = "homelabping-cd34e"
	tests := []struct {
		name string
		// expect is the submitted expectation's apps.
		expect []string
		hooks  []string // app:hook run in order
		token  string   // "" the workflow's own
		env    string
		// hookWorkflow is the workflow the values name; "" workflow.
		hookWorkflow string
		wantFail     bool
		wantOut      string
		wantPhase    reporter.Phase
	}{
		{name: "staging: every app synced", expect: []string{"homelabping", "postgres"},
			hooks: []string{"postgres:PostSync", "homelabping:PostSync"}, env: "v1", wantOut: "success=true", wantPhase: reporter.PhaseSucceeded},
		{name: "staging: one app synced", expect: []string{"homelabping", "postgres"},
			hooks: []string{"homelabping:PostSync"}, env: "v1", wantPhase: reporter.PhasePending},
		{name: "a failed sync", expect: []string{"homelabping", "postgres"},
			hooks: []string{"homelabping:SyncFail"}, env: "v1", wantOut: "success=false", wantPhase: reporter.PhaseFailed},
		{name: "production: an app the workflow does not expect", expect: []string{"homelabping"},
			hooks: []string{"postgres:PostSync"}, env: "production", wantOut: "nothing to report", wantPhase: reporter.PhasePending},
		{name: "a wrong token", expect: []string{"homelabping"}, token: strings.Repeat("0", 64),
			hooks: []string{"homelabping:PostSync"}, env: "production", wantFail: true, wantOut: "answered 403", wantPhase: reporter.PhasePending},
		{name: "a hostile workflow name", expect: []string{"homelabping"}, hookWorkflow: `w","Success":true,"x":"`,
			hooks: []string{"homelabping:SyncFail"}, env: "production", wantFail: true, wantOut: "invalid workflow", wantPhase: reporter.PhasePending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newHookRig(t)
			if err := r.rep.Submit(t.Context(), workflow, tt.expect); err != nil {
				t.Fatal(err)
			}
			token, err := r.rep.Token(t.Context(), workflow)
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" {
				token = tt.token
			}
			hookWorkflow := workflow
			if tt.hookWorkflow != "" {
				hookWorkflow = tt.hookWorkflow
			}
			secret := map[string]string{hookWorkflow: token}
			values := map[string]any{"env": tt.env, "production": tt.env == "production", "workflow": hookWorkflow}
			var outs []string
			for _, h := range tt.hooks {
				app, hook, _ := strings.Cut(h, ":")
				out, err := r.runHook(t, app, hook, values, secret)
				outs = append(outs, out)
				if (err != nil) != tt.wantFail {
					t.Fatalf("%s: err %v, want failure %v; output:\n%s", h, err, tt.wantFail, out)
				}
			}
			if all := strings.Join(outs, "\n"); !strings.Contains(all, tt.wantOut) {
				t.Errorf("output %q, want %q", all, tt.wantOut)
			}
			exp, err := r.rep.Get(t.Context(), workflow)
			if err != nil {
				t.Fatal(err)
			}
			if exp.Phase != tt.wantPhase {
				t.Errorf("phase %s (%s), want %s", exp.Phase, exp.Reason, tt.wantPhase)
			}
		})
	}
}
