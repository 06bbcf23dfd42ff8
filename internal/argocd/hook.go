package argocd

import (
	"fmt"
	"path"
)

// reportScript posts one report to Runway's reporter in the original
// workflow-reporter's shape (POST /workflow/update {"WorkflowName",
// "App", "Success", "Message"}), authenticated with the workflow's own
// token. The token goes to curl on its standard input (a config line),
// never on a command line. Workflow and app names are checked against
// the reporter's alphabet first, so the body is always well-formed JSON.
// A workflow that does not expect the app (409: in production, an app
// other than the one being rolled out falls back to the manifest's
// workflow) is not a failure: there is nothing to report.
const reportScript = `set -eu
for v in "$RUNWAY_WORKFLOW" "$RUNWAY_APP"; do
  case "$v" in
    ''|*[!A-Za-z0-9._-]*) echo "runway report: invalid workflow or app name: $v" >&2; exit 2 ;;
  esac
done
body=$(printf '{"WorkflowName":"%s","App":"%s","Success":%s,"Message":"%s"}' \
  "$RUNWAY_WORKFLOW" "$RUNWAY_APP" "$RUNWAY_SUCCESS" "$RUNWAY_MESSAGE")
code=$(printf 'header = "Authorization: Bearer %s"\n' "$RUNWAY_REPORTER_TOKEN" |
  curl --config - --silent --show-error --retry 5 --retry-all-errors --max-time 30 \
    --output /dev/stderr --write-out '%{http_code}' \
    -H 'Content-Type: application/json' --data "$body" "$RUNWAY_REPORTER_URL/workflow/update")
case "$code" in
  2??) echo "runway report: $RUNWAY_APP in $RUNWAY_ENV: success=$RUNWAY_SUCCESS for $RUNWAY_WORKFLOW" ;;
  409) echo "runway report: $RUNWAY_WORKFLOW does not expect $RUNWAY_APP: nothing to report" ;;
  *) echo "runway report: the reporter answered $code" >&2; exit 1 ;;
esac
`

// hookDeadline bounds a hook Job, its wait for its token's Secret
// included (a pod waits for a missing Secret key).
const hookDeadline = 600

// reportHooks renders app's two report hooks: after a sync whose
// resources all became healthy (PostSync) the app reports success, after
// a failed sync (SyncFail) failure. They exist only where the app's
// manifest entry names a workflow to report to. wave orders the PostSync
// hook after the chart's other PostSync hooks. The app's Application
// does not retry a failed sync (syncPolicy): the SyncFail hook runs
// inside the failed attempt, so its report must be the sync's last word.
func (r *renderer) reportHooks(dir, app string, wave int) error {
	hooks := []struct {
		file, hook, suffix string
		success            bool
		message            string
	}{
		{"hook-report-synced.yaml", "PostSync", "synced", true, "Argo CD synced %s: every resource is healthy"},
		{"hook-report-failed.yaml", "SyncFail", "failed", false, "Argo CD failed to sync %s"},
	}
	for _, h := range hooks {
		fill := func(t *template) any {
			return r.reportJob(t, app, h.hook, app+"-report-"+h.suffix, h.success, fmt.Sprintf(h.message, app), wave)
		}
		if err := r.addTemplate(path.Join(dir, h.file), ".Values.workflow", fill); err != nil {
			return err
		}
	}
	return nil
}

// reportJob is a hook Job reporting for app.
func (r *renderer) reportJob(t *template, app, hook, name string, success bool, message string, wave int) any {
	lbl := labels(t, app)
	container := map[string]any{
		"name":    "report",
		"image":   r.o.HookImage,
		"command": []any{"/bin/sh", "-c", reportScript},
		"env": []any{
			envVar("RUNWAY_REPORTER_URL", r.o.ReporterURL),
			map[string]any{"name": "RUNWAY_WORKFLOW", "value": t.value(".Values.workflow")},
			envVar("RUNWAY_APP", app),
			map[string]any{"name": "RUNWAY_ENV", "value": t.value(".Values.env")},
			envVar("RUNWAY_SUCCESS", fmt.Sprint(success)),
			envVar("RUNWAY_MESSAGE", message),
			map[string]any{"name": "RUNWAY_REPORTER_TOKEN", "valueFrom": map[string]any{
				"secretKeyRef": map[string]any{"name": ReporterSecret, "key": t.value(".Values.workflow")},
			}},
		},
		"securityContext": restricted(),
	}
	return map[string]any{
		"apiVersion": "batch/v1",
		"kind":       "Job",
		"metadata": map[string]any{
			"name":   name,
			"labels": lbl,
			"annotations": map[string]any{
				"argocd.argoproj.io/hook":               hook,
				"argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
				"argocd.argoproj.io/sync-wave":          fmt.Sprint(wave),
			},
		},
		"spec": map[string]any{
			"backoffLimit":          int64(2),
			"activeDeadlineSeconds": int64(hookDeadline),
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels(t, app)},
				"spec": map[string]any{
					"restartPolicy":                "Never",
					"automountServiceAccountToken": false,
					"securityContext":              podSecurity(),
					"containers":                   []any{container},
				},
			},
		},
	}
}
