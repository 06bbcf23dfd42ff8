package argocd

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"slices"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/argorollouts"
	"github.com/runway-cd/runway/internal/image"
)

// appValues are the values every app and service chart takes; the
// environment chart sets them from the app's manifest entry. The
// pipeline image is not used by the charts (Runway runs migrations and
// tests) but passed on, so the Applications show it.
func appValues() map[string]any {
	return map[string]any{
		"env": "", "production": false, "workflow": "",
		"image": "", "version": "", "revision": "",
		"pipelineImage": "", "pipelineVersion": "",
	}
}

// appChart renders an app's chart: a Deployment in staging, a Rollout
// with the spec's canary steps and its AnalysisTemplates in production,
// a Service, and the hooks that report to Runway.
func (r *renderer) appChart(a *app) error {
	name := a.spec.Name
	dir := path.Join(chartDir(name), "templates")
	if err := r.chartMeta(name, "The Runway app "+name+", rendered from its runway.yaml.", appValues()); err != nil {
		return err
	}
	files := []struct {
		file, cond string
		fill       func(*template) any
	}{
		{"deployment.yaml", "not .Values.production", func(t *template) any { return r.deployment(t, a) }},
		{"rollout.yaml", ".Values.production", func(t *template) any { return r.rollout(t, a) }},
		{"service.yaml", "", func(t *template) any { return service(t, name, "http", 80, "http") }},
	}
	for _, f := range files {
		if err := r.addTemplate(path.Join(dir, f.file), f.cond, f.fill); err != nil {
			return err
		}
	}
	for _, tpl := range a.templates {
		p := path.Join(dir, "analysistemplate-"+tpl.Metadata.Name+".yaml")
		if err := r.addTemplate(p, ".Values.production", func(t *template) any { return r.analysisTemplate(t, name, tpl) }); err != nil {
			return err
		}
	}
	return r.reportHooks(dir, name, 0)
}

// selector selects app's pods.
func selector(app string) map[string]any {
	return map[string]any{"matchLabels": map[string]any{LabelApp: app}}
}

// appImage is the action printing the image of the release's app.
func (r *renderer) appImage(t *template, app string) string {
	img := ".Values.image"
	if r.o.Registry != "" {
		img = quote(r.o.Registry + "/" + app)
	}
	return t.value(fmt.Sprintf(`printf "%%s:%%s" %s .Values.version`, img))
}

// podTemplate is the pod template of app's replicas.
func (r *renderer) podTemplate(t *template, a *app) map[string]any {
	s := a.spec
	readiness, liveness := s.Run.Probes()
	container := map[string]any{
		"name":       "app",
		"image":      r.appImage(t, s.Name),
		"workingDir": image.AppDir,
		"command":    list(s.Run.Command),
		"env":        r.appEnv(t, s),
		"ports":      []any{map[string]any{"name": "http", "containerPort": int64(AppPort), "protocol": "TCP"}},
		"readinessProbe": map[string]any{
			"httpGet":          map[string]any{"path": readiness.Path, "port": "http"},
			"periodSeconds":    seconds(readiness.Period),
			"failureThreshold": int64(readiness.FailureThreshold),
		},
		"securityContext": restricted(),
	}
	if liveness != nil {
		container["livenessProbe"] = map[string]any{
			"httpGet":          map[string]any{"path": liveness.Path, "port": "http"},
			"periodSeconds":    seconds(liveness.Period),
			"failureThreshold": int64(liveness.FailureThreshold),
		}
	}
	lbl := labels(t, s.Name)
	lbl[LabelVersion] = t.value(".Values.version")
	return map[string]any{
		"metadata": map[string]any{
			"labels":      lbl,
			"annotations": map[string]any{AnnotationRevision: t.value(".Values.revision")},
		},
		"spec": map[string]any{
			"automountServiceAccountToken": false,
			"securityContext":              podSecurity(),
			"containers":                   []any{container},
		},
	}
}

// appEnv is the environment of app's replicas: what the local runtime
// gives them, the pod's address (apps bind $HOST) and, for an app that
// needs it, its own database, the password from DatabaseSecret.
func (r *renderer) appEnv(t *template, s *appspec.Spec) []any {
	env := []any{
		map[string]any{"name": "POD_IP", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "status.podIP"}}},
		envVar("HOST", "$(POD_IP)"),
		envVar(s.Run.PortEnv, fmt.Sprint(AppPort)),
		map[string]any{"name": "RUNWAY_ENV", "value": t.value(".Values.env")},
		envVar("RUNWAY_APP", s.Name),
		map[string]any{"name": "RUNWAY_VERSION", "value": t.value(".Values.version")},
	}
	for _, k := range sortedKeys(s.Run.Env) {
		env = append(env, envVar(k, s.Run.Env[k]))
	}
	if slices.Contains(s.Needs, postgresName) {
		env = append(env, databaseEnv(s.Name)...)
	}
	return env
}

// databaseEnv are the PG* variables and DATABASE_URL of app's database on
// the environment's server. The password is expanded by Kubernetes from
// PGPASSWORD, so no spec holds it.
func databaseEnv(app string) []any {
	return []any{
		envVar("PGHOST", postgresName),
		envVar("PGPORT", fmt.Sprint(postgresPort)),
		envVar("PGUSER", app),
		envVar("PGDATABASE", app),
		secretEnv("PGPASSWORD", DatabaseSecret, app),
		envVar("PGSSLMODE", "disable"),
		envVar("DATABASE_URL", fmt.Sprintf("postgres://%s:$(PGPASSWORD)@%s:%d/%s?sslmode=disable", app, postgresName, postgresPort, app)),
	}
}

func envVar(name, value string) map[string]any {
	return map[string]any{"name": name, "value": value}
}

func secretEnv(name, secret, key string) map[string]any {
	return map[string]any{"name": name, "valueFrom": map[string]any{
		"secretKeyRef": map[string]any{"name": secret, "key": key},
	}}
}

// restricted is a container security context the restricted Pod
// Security Standard admits.
func restricted() map[string]any {
	return map[string]any{
		"allowPrivilegeEscalation": false,
		"capabilities":             map[string]any{"drop": []any{"ALL"}},
	}
}

// podSecurity runs a pod as a user that is not root: an app image built
// on an empty base names no user, and the hook image's is not numeric, so
// the kubelet could not check runAsNonRoot on its own.
func podSecurity() map[string]any {
	return map[string]any{
		"runAsNonRoot":   true,
		"runAsUser":      int64(nonRootUID),
		"runAsGroup":     int64(nonRootUID),
		"seccompProfile": map[string]any{"type": "RuntimeDefault"},
	}
}

// nonRootUID is the user of app and hook pods (distroless' nonroot).
const nonRootUID = 65532

// seconds is d in whole seconds, at least one (a probe's period).
func seconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

func list(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// deployment is app's Deployment in a staging environment.
func (r *renderer) deployment(t *template, a *app) any {
	return map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": a.spec.Name, "labels": labels(t, a.spec.Name)},
		"spec": map[string]any{
			"replicas":                int64(a.spec.Run.Replicas),
			"selector":                selector(a.spec.Name),
			"progressDeadlineSeconds": int64(a.spec.ProgressDeadlineSeconds),
			"template":                r.podTemplate(t, a),
		},
	}
}

// rollout is app's Argo Rollouts Rollout in production: the spec's canary
// steps (weights by replica count: no traffic router is assumed) with
// its analyses, aborted when a canary is not ready in time.
func (r *renderer) rollout(t *template, a *app) any {
	s := a.spec
	canary := map[string]any{}
	if c := s.Strategy.Canary; c != nil {
		var steps []any
		for _, st := range c.Steps {
			steps = append(steps, r.step(t, a, st))
		}
		if steps != nil {
			canary["steps"] = steps
		}
		if bg := c.Analysis; bg != nil {
			an := map[string]any{"templates": templateRefs(s.Name, bg.Templates)}
			if args := r.analysisArgs(t, a, bg.Templates, bg.Args); len(args) > 0 {
				an["args"] = args
			}
			if bg.StartingStep > 0 {
				an["startingStep"] = int64(bg.StartingStep)
			}
			canary["analysis"] = an
		}
	}
	return map[string]any{
		"apiVersion": argoAPIVersion,
		"kind":       "Rollout",
		"metadata": map[string]any{"name": s.Name, "labels": labels(t, s.Name),
			// What Runway's driver follows the Rollout by (runtime argocd).
			"annotations": map[string]any{
				argorollouts.AnnotationVersion:  t.value(".Values.version"),
				argorollouts.AnnotationWorkflow: t.value(".Values.workflow"),
			}},
		"spec": map[string]any{
			"replicas":                int64(s.Run.Replicas),
			"selector":                selector(s.Name),
			"progressDeadlineSeconds": int64(s.ProgressDeadlineSeconds),
			"progressDeadlineAbort":   true,
			"template":                r.podTemplate(t, a),
			"strategy":                map[string]any{"canary": canary},
		},
	}
}

// step is one canary step in Argo Rollouts' shape.
func (r *renderer) step(t *template, a *app, st appspec.Step) any {
	switch {
	case st.SetWeight != nil:
		return map[string]any{"setWeight": int64(*st.SetWeight)}
	case st.Pause != nil:
		p := map[string]any{}
		if d := st.Pause.Duration.Duration; d > 0 {
			p["duration"] = argoDuration(d)
		}
		return map[string]any{"pause": p}
	default:
		an := map[string]any{"templates": templateRefs(a.spec.Name, st.Analysis.Templates)}
		if args := r.analysisArgs(t, a, st.Analysis.Templates, st.Analysis.Args); len(args) > 0 {
			an["args"] = args
		}
		return map[string]any{"analysis": an}
	}
}

// argoDuration writes d as Argo Rollouts reads a pause: whole seconds as
// "30s", else Go's form ("1.5s").
func argoDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return d.String()
}

// templateRefs are refs as the Rollout names app's AnalysisTemplates in
// the cluster (templateObjectName).
func templateRefs(app string, refs []appspec.TemplateRef) []any {
	out := make([]any, len(refs))
	for i, ref := range refs {
		out[i] = map[string]any{"templateName": templateObjectName(app, ref.TemplateName)}
	}
	return out
}

// analysisArgs are the args passed to templates: the spec's own, then
// those Runway fills (app, env, version, canary-version) that one of the
// templates declares and the spec did not give, sorted by name.
func (r *renderer) analysisArgs(t *template, a *app, refs []appspec.TemplateRef, given []appspec.Arg) []any {
	declared := map[string]bool{}
	for _, ref := range refs {
		for _, n := range a.args[ref.TemplateName] {
			declared[n] = true
		}
	}
	values := map[string]any{}
	for _, g := range given {
		values[g.Name] = g.Value
	}
	runway := map[string]func() any{
		"app":            func() any { return a.spec.Name },
		"env":            func() any { return t.value(".Values.env") },
		"version":        func() any { return t.value(".Values.version") },
		"canary-version": func() any { return t.value(".Values.version") },
	}
	for _, n := range sortedKeys(runway) {
		if _, ok := values[n]; !ok && declared[n] {
			values[n] = runway[n]()
		}
	}
	var out []any
	for _, n := range sortedKeys(values) {
		out = append(out, map[string]any{"name": n, "value": values[n]})
	}
	return out
}

// analysisTemplate is one of app's AnalysisTemplates as written, named
// <app>-<name> (templateObjectName) and with prometheus.address set to
// the cluster's Prometheus.
func (r *renderer) analysisTemplate(t *template, app string, tpl *analysis.Template) any {
	b, err := json.Marshal(tpl)
	if err != nil {
		panic(fmt.Sprintf("argocd: encoding a parsed template: %v", err)) // only JSON types in it
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		panic(fmt.Sprintf("argocd: decoding a parsed template: %v", err))
	}
	meta := obj["metadata"].(map[string]any)
	delete(meta, "namespace") // the release's
	meta["name"] = templateObjectName(app, tpl.Metadata.Name)
	lbl, _ := meta["labels"].(map[string]any)
	if lbl == nil {
		lbl = map[string]any{}
	}
	for k, v := range labels(t, app) {
		lbl[k] = v
	}
	meta["labels"] = lbl
	for _, m := range obj["spec"].(map[string]any)["metrics"].([]any) {
		if p, ok := m.(map[string]any)["provider"].(map[string]any)["prometheus"].(map[string]any); ok {
			p["address"] = r.o.PrometheusAddress
		}
	}
	return obj
}

// service is the ClusterIP Service of app.
func service(t *template, app, portName string, port int, target string) any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata":   map[string]any{"name": app, "labels": labels(t, app)},
		"spec": map[string]any{
			"type":     "ClusterIP",
			"selector": map[string]any{LabelApp: app},
			"ports": []any{map[string]any{
				"name": portName, "port": int64(port), "targetPort": target, "protocol": "TCP",
			}},
		},
	}
}
