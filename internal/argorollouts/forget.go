package argorollouts

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/runway-cd/runway/internal/runtime/kubernetes"
)

// forget takes down an app that left the production manifest: an
// unfinished canary's workflow told it was superseded, then its Rollout
// (Kubernetes' garbage collector removes its ReplicaSets, pods and
// AnalysisRuns), Service and AnalysisTemplates deleted.
func (p *pass) forget(ctx context.Context) (result, error) {
	o := p.obs
	msg := fmt.Sprintf("superseded: %s left the %s manifest", p.app, p.env)
	if o.exists && o.version != "" && !o.ended {
		if err := p.reportSuperseded(ctx, o.workflow, msg); err != nil {
			return backoff(), nil
		}
		if err := p.recordEnd(ctx, endRecord{Version: o.version, Workflow: o.workflow, Outcome: outcomeSuperseded, Reported: true,
			Message: msg, Finished: p.c.clock.Now().UTC()}); err != nil && !apierrors.IsNotFound(err) {
			return result{}, err
		}
	}
	if p.c.opts.Synced {
		// Argo CD prunes what left the manifest.
		p.obs = observation{}
		p.publish()
		return result{}, nil
	}
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	if o.exists {
		err := p.c.dyn.Resource(rolloutGVR).Namespace(p.ns).Delete(ctx, p.app, del)
		if err != nil && !apierrors.IsNotFound(err) {
			return result{}, fmt.Errorf("deleting the rollout of %s: %w", p, err)
		}
	}
	svc, err := p.c.kube.CoreV1().Services(p.ns).Get(ctx, kubernetes.ServiceName(p.app), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return result{}, fmt.Errorf("reading the service of %s: %w", p, err)
	case svc.Labels[LabelManagedBy] == ManagedBy && svc.Labels[LabelApp] == p.app:
		if err := p.c.kube.CoreV1().Services(p.ns).Delete(ctx, kubernetes.ServiceName(p.app), del); err != nil && !apierrors.IsNotFound(err) {
			return result{}, fmt.Errorf("deleting the service of %s: %w", p, err)
		}
	}
	sel := labels.SelectorFromSet(objectLabels(p.env, p.app)).String()
	err = p.c.dyn.Resource(analysisTemplateGVR).Namespace(p.ns).DeleteCollection(ctx, del, metav1.ListOptions{LabelSelector: sel})
	if err != nil && !apierrors.IsNotFound(err) {
		return result{}, fmt.Errorf("deleting the analysis templates of %s: %w", p, err)
	}
	if o.exists {
		p.log.Info("app removed from production")
		p.normal("Removed", fmt.Sprintf("%s left the %s manifest", p.app, p.env))
	}
	p.obs = observation{}
	p.publish()
	return result{}, nil
}
