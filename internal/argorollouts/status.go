package argorollouts

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/rollout"
)

// observation is what a Rollout, its ReplicaSets and its AnalysisRuns say,
// in Runway's terms: built once per pass (and by the unit tests) from the
// objects alone.
type observation struct {
	exists bool
	// version is the template's version, workflow where its end is
	// reported, entry its manifest entry; stableAtStart and stableEntry
	// the stable version when the template got it.
	version, workflow string
	entry             *manifest.App
	stableAtStart     string
	stableEntry       *manifest.App
	started           time.Time
	abortReason       string
	end               endRecord
	ended             bool // end is of version
	// stableVersion is the version of Argo's stable ReplicaSet.
	stableVersion string
	// observed: Argo has seen the latest spec (status.observedGeneration),
	// so its status is about version.
	observed bool
	phase    string
	message  string
	step     int
	steps    int
	weight   int
	aborted  bool
	// paused: a pause Promote ends; inconclusive: paused on an
	// inconclusive analysis; controllerPause is Argo's field.
	paused          bool
	inconclusive    bool
	controllerPause bool
	specPaused      bool
	invalidSpec     bool
	promoted        bool // Healthy with version as stable
	fullyPromoted   bool // stableRS == currentPodHash
	// stepInconclusive: the current step's analysis run is
	// Inconclusive (status.canary.currentStepAnalysisRunStatus), the
	// only pause whose promote passes the step (as Argo's plugin does).
	stepInconclusive bool
	// deadlineExceeded: Argo says the version did not progress in its
	// deadline (Degraded, ProgressDeadlineExceeded); for a first deploy,
	// which Argo counts as completed, the version's failure.
	deadlineExceeded bool
	currentStep      int64
	analyses         []rollout.Run
	// failure is the failing analysis' verdict (metric, value), for the
	// abort's reason.
	failure string
}

// observe reads ro (nil: none) with the ReplicaSets and AnalysisRuns of
// its namespace that belong to it.
func observe(ro *unstructured.Unstructured, rss, runs []*unstructured.Unstructured, redact func(string) string) observation {
	var o observation
	if ro == nil {
		return o
	}
	o.exists = true
	o.version = annotation(ro, annVersion)
	o.workflow = annotation(ro, annWorkflow)
	o.entry = readEntry(ro, annEntry)
	o.stableAtStart = annotation(ro, annStableVersion)
	o.stableEntry = readEntry(ro, annStableEntry)
	o.abortReason = annotation(ro, annAbortReason)
	if t, err := time.Parse(time.RFC3339Nano, annotation(ro, annStarted)); err == nil {
		o.started = t
	}
	if e, ok := readEnd(ro); ok {
		o.end = e
		o.ended = e.Version == o.version && e.done()
	}
	obj := ro.Object
	o.steps = len(slice(obj, "spec", "strategy", "canary", "steps"))
	o.specPaused = boolean(obj, "spec", "paused")
	stableRS := str(obj, "status", "stableRS")
	current := str(obj, "status", "currentPodHash")
	// Argo's status is of the latest spec once it says it saw its
	// generation, and its current ReplicaSet (when known) runs version.
	o.observed = generationObserved(ro)
	if v := versionOf(rss, current); v != "" && v != o.version {
		o.observed = false
	}
	o.fullyPromoted = stableRS != "" && stableRS == current
	o.stableVersion = versionOf(rss, stableRS)
	if o.stableVersion == "" && o.observed && o.fullyPromoted {
		o.stableVersion = o.version
	}
	if o.stableVersion == "" && stableRS != "" {
		o.stableVersion = o.stableAtStart
	}
	o.controllerPause = boolean(obj, "status", "controllerPause")
	pauses := slice(obj, "status", "pauseConditions")
	o.phase, o.message = phase(obj, o.observed, o.controllerPause && len(pauses) == 0)
	if n, ok := integer(obj, "status", "currentStepIndex"); ok {
		o.currentStep = n
	}
	o.step = int(min(o.currentStep, int64(o.steps)))
	if o.observed {
		o.aborted = boolean(obj, "status", "abort")
		o.paused = len(pauses) > 0 || o.specPaused
		for _, p := range pauses {
			if pm, ok := p.(map[string]any); ok && pm["reason"] == "InconclusiveAnalysisRun" {
				o.inconclusive = true
			}
		}
		o.invalidSpec = o.phase == rollout.Degraded && strings.HasPrefix(o.message, "InvalidSpec")
		o.deadlineExceeded = o.phase == rollout.Degraded && strings.HasPrefix(o.message, "ProgressDeadlineExceeded")
		o.stepInconclusive = str(obj, "status", "canary", "currentStepAnalysisRunStatus", "status") == rollout.Inconclusive
		o.promoted = o.phase == rollout.Healthy && o.fullyPromoted
	}
	o.weight = weight(obj, o)
	if !o.observed {
		// Argo's step and weight are still those of the previous
		// template: the new one starts at step 0, weight 0.
		o.step, o.weight = 0, 0
	}
	o.analyses, o.failure = analyses(ro, runs, current, redact)
	return o
}

// generationObserved reports whether Argo's status is of the Rollout's
// latest spec: status.observedGeneration is the generation it saw, as a
// string.
func generationObserved(ro *unstructured.Unstructured) bool {
	seen, err := strconv.ParseInt(str(ro.Object, "status", "observedGeneration"), 10, 64)
	if err != nil {
		return false
	}
	return seen >= ro.GetGeneration()
}

// phase is the Rollout's phase and message as Argo's CLI reads them: its
// controller's, unless it has not seen the latest spec or an unpause yet.
func phase(obj map[string]any, observed, unpausing bool) (string, string) {
	switch {
	case !observed:
		return rollout.Progressing, "waiting for the rollout's spec update to be observed"
	case unpausing:
		return rollout.Progressing, "waiting for the rollout to unpause"
	}
	p, msg := str(obj, "status", "phase"), str(obj, "status", "message")
	if p == "" {
		p = rollout.Progressing
	}
	return p, msg
}

// weight is the canary's share: Argo's weights under a traffic router,
// else the last setWeight at or before the current step (100 past the
// last step or once promoted, 0 once aborted).
func weight(obj map[string]any, o observation) int {
	switch {
	case o.aborted:
		return 0
	case o.fullyPromoted && o.observed:
		return 100
	}
	if w, ok := integer(obj, "status", "canary", "weights", "canary", "weight"); ok {
		return int(w)
	}
	steps := slice(obj, "spec", "strategy", "canary", "steps")
	if int(o.currentStep) >= len(steps) {
		return 100
	}
	for i := int(o.currentStep); i >= 0; i-- {
		if st, ok := steps[i].(map[string]any); ok {
			if w, ok := integer(st, "setWeight"); ok {
				return int(w)
			}
		}
	}
	return 0
}

// versionOf is the version of the ReplicaSet whose pod template hash is
// hash, "" if unknown.
func versionOf(rss []*unstructured.Unstructured, hash string) string {
	if hash == "" {
		return ""
	}
	for _, rs := range rss {
		if rs.GetLabels()[labelPodTemplateHash] == hash {
			if v, _, _ := unstructured.NestedString(rs.Object, "spec", "template", "metadata", "labels", LabelVersion); v != "" {
				return v
			}
			return rs.GetLabels()[LabelVersion]
		}
	}
	return ""
}

// analyses are the AnalysisRuns of the Rollout's current pod template,
// oldest first, and the verdict of the first failed one (its failing
// metric, last value and message).
func analyses(ro *unstructured.Unstructured, runs []*unstructured.Unstructured, hash string, redact func(string) string) ([]rollout.Run, string) {
	var mine []*unstructured.Unstructured
	for _, r := range runs {
		if !ownedBy(r, ro) || (hash != "" && r.GetLabels()[labelPodTemplateHash] != hash) {
			continue
		}
		mine = append(mine, r)
	}
	slices.SortStableFunc(mine, func(a, b *unstructured.Unstructured) int {
		if c := a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	var out []rollout.Run
	failure := ""
	for _, r := range mine {
		run := rollout.Run{Name: r.GetName(), Phase: runPhase(str(r.Object, "status", "phase")), Reason: clean(runReason(r.Object), redact)}
		if failure == "" && (run.Phase == rollout.Failed || run.Phase == rollout.Error) {
			failure = clean(verdict(r.Object), redact)
		}
		out = append(out, run)
	}
	return out, failure
}

func ownedBy(obj, owner *unstructured.Unstructured) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind == "Rollout" && (ref.UID == owner.GetUID() || owner.GetUID() == "" && ref.Name == owner.GetName()) {
			return true
		}
	}
	return false
}

// runPhase is an AnalysisRun's phase in Runway's words: Argo's Pending is
// Running.
func runPhase(p string) string {
	switch p {
	case "", "Pending", "Running":
		return rollout.Running
	}
	return p
}

// runReason says why a run is where it is: its message, then each
// metric's phase, counts and last measurement.
func runReason(obj map[string]any) string {
	var parts []string
	if msg := str(obj, "status", "message"); msg != "" {
		parts = append(parts, msg)
	}
	for _, m := range slice(obj, "status", "metricResults") {
		mr, ok := m.(map[string]any)
		if !ok {
			continue
		}
		s := fmt.Sprintf("%s: %s", str(mr, "name"), str(mr, "phase"))
		count, _ := integer(mr, "count")
		failed, _ := integer(mr, "failed")
		incon, _ := integer(mr, "inconclusive")
		errs, _ := integer(mr, "error")
		s += fmt.Sprintf(" after %d measurements (%d failed, %d inconclusive, %d errors)", count, failed, incon, errs)
		if ms := slice(mr, "measurements"); len(ms) > 0 {
			if last, ok := ms[len(ms)-1].(map[string]any); ok {
				if v := str(last, "value"); v != "" {
					s += ", last value " + v
				}
				if msg := str(last, "message"); msg != "" {
					s += ": " + msg
				}
			}
		}
		if msg := str(mr, "message"); msg != "" {
			s += " (" + msg + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// verdict says, first, which metric failed a run and with what value, then
// the run's message: "metric success-rate Failed: last value [0.5], 4 of
// 4 measurements failed; Metric ... assessed Failed due to ...".
func verdict(obj map[string]any) string {
	var parts []string
	for _, m := range slice(obj, "status", "metricResults") {
		mr, ok := m.(map[string]any)
		if !ok {
			continue
		}
		ph := str(mr, "phase")
		if ph != rollout.Failed && ph != rollout.Error && ph != rollout.Inconclusive {
			continue
		}
		s := fmt.Sprintf("metric %s %s", str(mr, "name"), ph)
		var details []string
		if ms := slice(mr, "measurements"); len(ms) > 0 {
			if last, ok := ms[len(ms)-1].(map[string]any); ok {
				if v := str(last, "value"); v != "" {
					details = append(details, "last value "+v)
				}
				if msg := str(last, "message"); msg != "" {
					details = append(details, msg)
				}
			}
		}
		count, _ := integer(mr, "count")
		failed, _ := integer(mr, "failed")
		errs, _ := integer(mr, "error")
		details = append(details, fmt.Sprintf("%d of %d measurements failed", failed, count))
		if errs > 0 {
			details = append(details, fmt.Sprintf("%d errors", errs))
		}
		parts = append(parts, s+": "+strings.Join(details, ", "))
	}
	if msg := str(obj, "status", "message"); msg != "" {
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return "analysis " + str(obj, "status", "phase")
	}
	return strings.Join(parts, "; ")
}

func clean(s string, redact func(string) string) string {
	if redact != nil {
		s = redact(s)
	}
	return oneline.Clean(s, 1024)
}

// status is the rollout's state for the API: the canary of o.version over
// the stable version it started from. ok is false for what is not a
// canary (a first deploy, a template put back on the stable version).
func (o observation) status(env, app string, now time.Time) (rollout.Status, bool) {
	if !o.exists || o.version == "" || o.stableAtStart == "" || o.stableAtStart == o.version {
		return rollout.Status{}, false
	}
	s := rollout.Status{
		Env: env, App: app, StableVersion: o.stableAtStart, CanaryVersion: o.version,
		Phase: o.phase, Step: o.step, Steps: o.steps, Weight: o.weight, Message: o.message,
		Started: o.started, Analyses: o.analyses,
	}
	if o.paused && s.Phase == rollout.Progressing {
		s.Phase = rollout.Paused
	}
	if o.end.Version == o.version && o.end.Outcome != "" && o.end.Outcome != outcomeStable {
		s.Message = o.end.Message
		if o.end.done() {
			s.Finished = o.end.Finished
			if s.Finished.IsZero() {
				s.Finished = now
			}
		}
		switch o.end.Outcome {
		case outcomePromoted:
			s.Phase, s.Weight, s.Step = rollout.Healthy, 100, o.steps
			s.StableVersion = o.stableAtStart
		case outcomeAborted, outcomeSuperseded:
			s.Phase, s.Weight = rollout.Degraded, 0
		}
	}
	return s, true
}
