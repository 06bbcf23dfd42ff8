package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// filter applies the path filter of a verified push's app. It returns why
// the push runs no pipeline ("" when it runs one), or a reply when the
// changed paths could not be read. The changed paths come from git (the
// trees of before and after in the app's repository); the payload's list
// is used only when git cannot tell (a commit is not in the repository).
// A push that is not filtered runs its pipeline: a new branch (before all
// zeros: nothing to compare with), more than MaxChangedPaths changed, or
// neither git nor the payload can tell what changed.
func (h *Handler) filter(ctx context.Context, p Push) (string, *reply) {
	if h.paths == nil {
		return "", nil
	}
	app, f := h.paths.PathFilter(p.Repo, p.Branch)
	if f.IsZero() {
		return "", nil
	}
	if strings.Trim(p.Before, "0") == "" {
		h.logger.Info("path filter not applied: the push has no base to compare with (a new branch)", "delivery", p.Delivery, "app", app)
		return "", nil
	}
	paths, err := h.paths.ChangedPaths(ctx, p.Repo, p.Branch, p.Before, p.After)
	switch {
	case err == nil:
	case errors.Is(err, ErrTooManyPaths):
		h.logger.Info("path filter not applied: too many changed paths", "delivery", p.Delivery, "app", app, "max", MaxChangedPaths)
		return "", nil
	case errors.Is(err, ErrUnknownCommit) && p.PathsListed:
		h.logger.Info("path filter applied to the payload's list of changed paths: git cannot tell", "delivery", p.Delivery, "app", app, "err", err)
		paths = p.Paths
	case errors.Is(err, ErrUnknownCommit):
		h.logger.Info("path filter not applied: neither git nor the payload tells what changed", "delivery", p.Delivery, "app", app, "err", err)
		return "", nil
	default:
		return "", refuse(http.StatusServiceUnavailable,
			fmt.Sprintf("cannot read the changes of %s to apply the path filter of app %s; try again later", p.Repo, app), err)
	}
	if len(paths) > MaxChangedPaths {
		return "", nil
	}
	for _, name := range paths {
		if f.Triggers(name) {
			return "", nil
		}
	}
	return f.reason(app), nil
}

// reason says why no changed path of a push triggered app's pipeline.
func (f PathFilter) reason(app string) string {
	if len(f.Paths) == 0 {
		return fmt.Sprintf("every changed path matches apps[%s].ignorePaths (%s)", app, shown(f.IgnorePaths))
	}
	r := fmt.Sprintf("no changed path matches apps[%s].paths (%s)", app, shown(f.Paths))
	if len(f.IgnorePaths) > 0 {
		r += fmt.Sprintf(" outside apps[%s].ignorePaths (%s)", app, shown(f.IgnorePaths))
	}
	return r
}

// shown lists patterns for an answer, the first few only, each cut short.
func shown(patterns []string) string {
	const most, long = 5, 100
	var b strings.Builder
	for i, p := range patterns {
		if i == most {
			fmt.Fprintf(&b, ", and %d more", len(patterns)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(p) > long {
			p = p[:long] + "..."
		}
		b.WriteString(p)
	}
	return b.String()
}
