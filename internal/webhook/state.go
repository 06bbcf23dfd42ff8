package webhook

import (
	"context"
	"fmt"
	"net/http"
)

// isState reports whether p is a push to the state repository's branch
// (pushes to its other branches are handled as any other repository's:
// acknowledged and ignored unless an app tracks them).
func (h *Handler) isState(p Push) bool {
	return h.state.Repo != "" && p.Repo == h.state.Repo && p.Branch == h.state.Branch && !p.Deleted
}

// reconcile answers a push to the state repository's branch: the
// environments are reconciled at once rather than at the next poll, as
// Argo CD's webhook refreshes its applications. Nothing of the payload is
// used but the branch: the pass reads the repository from its configured
// URL, so a signed but stale or forged push can only cause an early pass.
// A delivery is acted on once, like a pipeline's.
func (h *Handler) reconcile(ctx context.Context, p Push, bodyKey string) reply {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()

	h.startMu.Lock()
	defer h.startMu.Unlock()
	if rep := h.duplicate(sctx, p.Delivery, bodyKey); rep != nil {
		return *rep
	}
	h.state.Reconciler.Reconcile()
	h.save(sctx, p.Delivery, bodyKey, "")
	h.logger.Info("state repository pushed: reconciling", "delivery", p.Delivery, "repo", p.Repo, "branch", p.Branch, "after", p.After)
	return reply{status: http.StatusAccepted, body: response{
		Status: "reconciling",
		Reason: fmt.Sprintf("push to the state repository %s (branch %s): reconciling environments now", p.Repo, p.Branch),
	}}
}
