package dashboard

import (
	"errors"
	"net/url"

	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// Results of the buttons travel in the redirect's query as codes, never
// as text: a crafted link can only show one of these messages.
var (
	doneMessages = map[string]string{
		"cancel":  "Cancel requested.",
		"promote": "Promote requested: the rollout goes on to its next step.",
		"full":    "Full promotion requested: the canary takes all traffic.",
		"abort":   "Abort requested: traffic goes back to the stable version.",
		"retry":   "Retry requested: the rollout starts its analysis again.",
	}
	errMessages = map[string]string{
		"role":      "Only an admin session may do that: log in with the admin token.",
		"notpaused": "The rollout is not in a state that allows that (not paused, or already being promoted).",
		"none":      "There is no rollout of this app in progress.",
		"done":      "The pipeline has ended already.",
		"promoted":  "The pipeline's change is being promoted: abort its rollout instead.",
		"notfound":  "Not found.",
		"failed":    "That did not work; the server's log says why.",
	}
)

// errCode names err for errMessages.
func errCode(err error) string {
	switch {
	case errors.Is(err, rollout.ErrNotPaused):
		return "notpaused"
	case errors.Is(err, rollout.ErrNoRollout):
		return "none"
	case errors.Is(err, pipeline.ErrDone):
		return "done"
	case errors.Is(err, pipeline.ErrPromoted):
		return "promoted"
	case errors.Is(err, pipeline.ErrNotFound):
		return "notfound"
	}
	return "failed"
}

// flash is the message a redirect's query asks for, and whether it is
// bad news.
func flash(q url.Values) (string, bool) {
	if m, ok := errMessages[q.Get("err")]; ok {
		return m, true
	}
	return doneMessages[q.Get("done")], false
}
