package argorollouts

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runway-cd/runway/internal/manifest"
)

// Synced mode (Options.Synced, the server's runtime argocd): Argo CD
// writes the Rollouts and AnalysisTemplates from `runway export argocd`,
// and their PostSync and SyncFail hooks report the canary's end. The
// controller writes no spec and sends no end report. It follows each
// Rollout by the annotations the export gives it (AnnotationVersion,
// AnnotationWorkflow), records on first sight of a version what an abort
// needs (the stable version then and its manifest entry, from the hand
// over), maps promote, abort and retry to Argo's operations as always,
// and on an abort reverts the production manifest in git, which Argo CD
// then syncs. A superseded or removed app's workflow is still told.
//
// The stable version's manifest entry is known from the hand-overs this
// process saw: after a restart in the middle of a canary it is not, and
// an abort of that canary is not reverted in git (logged; the pipeline
// still ends Failed by the SyncFail hook's report).

// annFollowing is the version whose start recordStart recorded: the
// other annotations it writes are of that version.
const annFollowing = "runway.dev/following"

// maxEntries bounds the manifest entries kept per app, by version.
const maxEntries = 8

// rememberEntry keeps the manifest entry of a handed-over version, for
// a later canary's revert. Called with c.mu held.
func (ks *keyState) rememberEntry(version string, entry *manifest.App) {
	if entry == nil || version == "" {
		return
	}
	if ks.entries == nil {
		ks.entries = map[string]*manifest.App{}
	}
	if _, ok := ks.entries[version]; !ok {
		ks.order = append(ks.order, version)
	}
	ks.entries[version] = entry
	for len(ks.order) > maxEntries {
		delete(ks.entries, ks.order[0])
		ks.order = ks.order[1:]
	}
}

func (p *pass) entryOf(version string) *manifest.App {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.ks.entries[version]
}

// decideSynced is decide's choice in Synced mode once no end is due:
// record a new version's start, else nothing (the spec is Argo CD's).
func (p *pass) decideSynced() action {
	o := p.obs
	if o.exists && o.version != "" && !o.ended && annotation(p.ro, annFollowing) != o.version {
		return p.recordStart
	}
	return nil
}

// recordStart records, on first sight of the Rollout's version, when it
// started and what an abort writes back: the stable version as Argo has
// it now and its manifest entry (none for a first deploy).
func (p *pass) recordStart(ctx context.Context) (result, error) {
	o := p.obs
	// A previous version's record goes (null removes an annotation in a
	// merge patch).
	ann := map[string]any{
		annFollowing: o.version, annStarted: p.c.clock.Now().UTC().Format(time.RFC3339Nano),
		annEntry: nil, annStableVersion: nil, annStableEntry: nil, annAbortReason: nil,
	}
	if e := p.entryOf(o.version); e != nil {
		s, err := encodeJSON(e)
		if err != nil {
			return result{}, err
		}
		ann[annEntry] = s
	}
	if stable := o.stableVersion; stable != "" && stable != o.version {
		ann[annStableVersion] = stable
		if e := p.entryOf(stable); e != nil {
			s, err := encodeJSON(e)
			if err != nil {
				return result{}, err
			}
			ann[annStableEntry] = s
		} else {
			p.log.Warn("the stable version's manifest entry is not known: an abort of this canary is not reverted in git", "canary", o.version, "stable", stable)
		}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return result{}, err
	}
	if _, err := p.c.dyn.Resource(rolloutGVR).Namespace(p.ns).Patch(ctx, p.app, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: ManagedBy}); err != nil {
		return result{}, fmt.Errorf("recording the start of %s %s: %w", p, o.version, err)
	}
	p.log.Info("following the synced rollout", "version", o.version, "stable", o.stableVersion)
	p.normal("Following", fmt.Sprintf("%s %s synced by Argo CD (stable %s)", p.app, o.version, o.stableVersion))
	return result{}, nil
}
