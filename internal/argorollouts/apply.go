package argorollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/workload"
)

// stableOf is the stable version the next template starts over, and its
// manifest entry (nil when not known: no revert is then possible).
func (p *pass) stableOf() (string, *manifest.App) {
	o := p.obs
	switch {
	case !o.exists:
		return "", nil
	case o.fullyPromoted && o.stableVersion == o.version:
		return o.version, p.preferDesired(o.version, o.entry)
	case o.stableVersion != "" && o.stableVersion == o.stableAtStart:
		return o.stableVersion, p.preferDesired(o.stableVersion, o.stableEntry)
	}
	return o.stableVersion, nil
}

// preferDesired is the desired entry when it is of version (the entry as
// the manifest has it now), else entry.
func (p *pass) preferDesired(version string, entry *manifest.App) *manifest.App {
	if d := p.desired; d != nil && d.Entry != nil && d.Version == version {
		return d.Entry
	}
	return entry
}

// sameEntry reports whether a and b are the same manifest entry.
func sameEntry(a, b *manifest.App) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && string(x) == string(y)
}

// recordEntry records d's manifest entry as that of the running version
// (a person changed it in the manifest, the version staying the same).
func (p *pass) recordEntry(ctx context.Context, d *rollout.Desired) (result, error) {
	s, err := encodeJSON(d.Entry)
	if err != nil {
		return result{}, err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{annEntry: s}}})
	if err != nil {
		return result{}, err
	}
	if _, err := p.c.dyn.Resource(rolloutGVR).Namespace(p.ns).Patch(ctx, p.app, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: ManagedBy}); err != nil {
		return result{}, fmt.Errorf("recording the manifest entry of %s %s: %w", p, d.Version, err)
	}
	p.log.Info("manifest entry of the running version recorded", "version", d.Version)
	return result{}, nil
}

// apply makes the Rollout run d: its AnalysisTemplates and Service first,
// then the Rollout with d's template. Changing the template of a Rollout
// is what starts Argo's canary; a template back on the stable version
// ends at once (Argo goes back to its stable ReplicaSet).
func (p *pass) apply(ctx context.Context, d *rollout.Desired) (result, error) {
	spec := d.Artifact.Spec
	if spec == nil {
		return p.failVersion(ctx, d, "the artifact has no app spec")
	}
	rs, err := p.c.opts.ReplicaSets.ReplicaSet(ctx, p.env, d.Artifact, spec.ProgressDeadline())
	if errors.Is(err, workload.ErrRetry) {
		return result{}, fmt.Errorf("making the replica set of %s %s: %w", p, d.Version, err)
	}
	if err != nil {
		return p.failVersion(ctx, d, err.Error())
	}
	pod, err := p.c.opts.Templates.PodTemplate(ctx, rs)
	if err != nil {
		return result{}, fmt.Errorf("making the pod template of %s %s: %w", p, d.Version, err)
	}
	// The variables' Secret the template takes its environment from
	// (it makes the namespace too); owned by the Rollout below.
	if err := p.c.opts.Templates.EnsureVars(ctx, rs); err != nil {
		return result{}, fmt.Errorf("making the variables of %s %s: %w", p, d.Version, err)
	}
	templates, err := renderTemplates(d.Artifact, p.env, p.ns, p.c.opts.PrometheusAddress)
	if err != nil {
		return p.failVersion(ctx, d, err.Error())
	}
	stable, stableEntry := p.stableOf()
	in := rolloutInput{
		Env: p.env, App: p.app, Namespace: p.ns, Version: d.Version, Workflow: d.Workflow, Entry: d.Entry,
		StableVersion: stable, StableEntry: stableEntry, Spec: spec, Pod: pod, Started: p.c.clock.Now().UTC(),
	}
	if stable != "" && stable == d.Version {
		// Back on the stable version (an aborted canary's revert):
		// nothing rolls out, nothing is reported.
		in.End = &endRecord{Version: d.Version, Workflow: d.Workflow, Outcome: outcomeStable, Reported: true, Finished: in.Started}
	}
	if in.Entry == nil && stable == d.Version {
		in.Entry = stableEntry
	}
	ro, err := renderRollout(in)
	if err != nil {
		return p.failVersion(ctx, d, err.Error())
	}
	for _, t := range templates {
		if _, err := p.put(ctx, t, analysisTemplateGVR, func(cur, want *unstructured.Unstructured) {
			cur.Object["spec"] = want.Object["spec"]
			cur.SetLabels(want.GetLabels())
		}); err != nil {
			return result{}, err
		}
	}
	if svc := renderService(p.env, p.app, p.ns, pod); svc != nil {
		if err := p.putService(ctx, svc); err != nil {
			return result{}, err
		}
	}
	made, err := p.put(ctx, ro, rolloutGVR, func(cur, want *unstructured.Unstructured) {
		cur.Object["spec"] = want.Object["spec"]
		l := cur.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		maps.Copy(l, want.GetLabels())
		cur.SetLabels(l)
		a := cur.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		for _, k := range []string{annVersion, annWorkflow, annEntry, annStableVersion, annStableEntry, annStarted, annEnd, annAbortReason} {
			delete(a, k)
		}
		maps.Copy(a, want.GetAnnotations())
		cur.SetAnnotations(a)
	})
	if err != nil {
		return result{}, err
	}
	owner := metav1.OwnerReference{APIVersion: apiVersion, Kind: "Rollout", Name: made.GetName(), UID: made.GetUID()}
	if err := p.c.opts.Templates.EnsureVars(ctx, rs, owner); err != nil {
		return result{}, fmt.Errorf("making the variables of %s %s: %w", p, d.Version, err)
	}
	switch {
	case in.End != nil:
		p.log.Info("rollout back on the stable version", "version", d.Version)
	case stable == "":
		p.log.Info("rollout created", "version", d.Version)
		p.normal("Deploying", fmt.Sprintf("%s %s deploying", p.app, d.Version))
	default:
		p.log.Info("canary started", "canary", d.Version, "stable", stable)
		p.normal("Started", fmt.Sprintf("canary %s over %s", d.Version, stable))
	}
	return result{}, nil // the Rollout's change enqueues the key
}

// put creates want, or updates the object of its name with update (which
// copies what Runway owns of want into the current object).
func (p *pass) put(ctx context.Context, want *unstructured.Unstructured, gvr schema.GroupVersionResource, update func(cur, want *unstructured.Unstructured)) (*unstructured.Unstructured, error) {
	client := p.c.dyn.Resource(gvr).Namespace(want.GetNamespace())
	cur, err := client.Get(ctx, want.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		made, err := client.Create(ctx, want, metav1.CreateOptions{FieldManager: ManagedBy})
		if err != nil {
			return nil, fmt.Errorf("creating %s %s/%s: %w", want.GetKind(), want.GetNamespace(), want.GetName(), err)
		}
		return made, nil
	case err != nil:
		return nil, fmt.Errorf("reading %s %s/%s: %w", want.GetKind(), want.GetNamespace(), want.GetName(), err)
	}
	if l := cur.GetLabels(); l[LabelManagedBy] != ManagedBy {
		return nil, fmt.Errorf("%s %s/%s exists and is not Runway's", want.GetKind(), want.GetNamespace(), want.GetName())
	} else if app := want.GetLabels()[LabelApp]; l[LabelApp] != app {
		return nil, fmt.Errorf("%s %s/%s exists and is not %s's (it is %q's)", want.GetKind(), want.GetNamespace(), want.GetName(), app, l[LabelApp])
	}
	update(cur, want)
	made, err := client.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ManagedBy})
	if err != nil {
		return nil, fmt.Errorf("updating %s %s/%s: %w", want.GetKind(), want.GetNamespace(), want.GetName(), err)
	}
	return made, nil
}

func (p *pass) putService(ctx context.Context, want *corev1.Service) error {
	client := p.c.kube.CoreV1().Services(want.Namespace)
	cur, err := client.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := client.Create(ctx, want, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
			return fmt.Errorf("creating service %s/%s: %w", want.Namespace, want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading service %s/%s: %w", want.Namespace, want.Name, err)
	}
	if cur.Labels[LabelManagedBy] != ManagedBy {
		return fmt.Errorf("service %s/%s exists and is not Runway's", want.Namespace, want.Name)
	}
	cur.Spec.Selector, cur.Spec.Ports = want.Spec.Selector, want.Spec.Ports
	maps.Copy(cur.Labels, want.Labels)
	if _, err := client.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
		return fmt.Errorf("updating service %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// failVersion gives up a version whose Rollout cannot be made (its spec,
// its templates, its settings are wrong): the production manifest is put
// back on the stable version and the failure reported, as an abort is;
// the same change is not tried again.
func (p *pass) failVersion(ctx context.Context, d *rollout.Desired, reason string) (result, error) {
	reason = clean(reason, p.c.opts.Redact)
	p.log.Error("the version's rollout cannot be made", "version", d.Version, "err", reason)
	stable, entry := p.stableOf()
	if stable != "" && stable != d.Version {
		if err := p.revert(ctx, d.Version, stable, entry, reason); err != nil {
			p.log.Error("reverting the production manifest", "version", d.Version, "err", err)
			reason += " (git revert failed: " + clean(err.Error(), nil) + ")"
		}
	}
	if err := p.report(ctx, d.Workflow, false, fmt.Sprintf("%s %s not rolled out: %s", p.app, d.Version, reason)); err != nil {
		return backoff(), nil
	}
	p.setFailed(d)
	p.warning("Failed", fmt.Sprintf("%s %s not rolled out: %s", p.app, d.Version, reason))
	return result{}, nil
}
