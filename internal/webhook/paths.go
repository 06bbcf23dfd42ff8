package webhook

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Bounds of path filters.
const (
	// MaxChangedPaths is how many changed paths of one push are matched
	// against an app's path filter. A push that changes more is not
	// filtered: its pipeline runs.
	MaxChangedPaths = 10000
	// MaxPatterns is how many patterns one list of a path filter may hold.
	MaxPatterns = 100
	// MaxPatternLen is the longest pattern accepted, in bytes.
	MaxPatternLen = 1024
)

// PathFilter selects an app's pushes by the paths of its repository they
// change, as the original's Argo Events sensors filter on changed paths.
// A changed path triggers the pipeline when it matches one of Paths (or
// Paths is empty) and none of IgnorePaths; a push runs its pipeline when
// one of its changed paths triggers it. The zero PathFilter filters
// nothing. Patterns are globs (see MatchGlob).
type PathFilter struct {
	Paths       []string
	IgnorePaths []string
}

// IsZero reports whether f lets every push through.
func (f PathFilter) IsZero() bool { return len(f.Paths) == 0 && len(f.IgnorePaths) == 0 }

// Triggers reports whether a change of name (slash-separated, relative to
// the repository's root) runs the pipeline.
func (f PathFilter) Triggers(name string) bool {
	if len(f.Paths) > 0 && !matchAny(f.Paths, name) {
		return false
	}
	return !matchAny(f.IgnorePaths, name)
}

// Validate checks every pattern of f (see ValidGlob) and the bounds.
func (f PathFilter) Validate() error {
	var errs []error
	for _, l := range []struct {
		name     string
		patterns []string
	}{{"paths", f.Paths}, {"ignorePaths", f.IgnorePaths}} {
		if len(l.patterns) > MaxPatterns {
			errs = append(errs, fmt.Errorf("%s has %d patterns, at most %d", l.name, len(l.patterns), MaxPatterns))
			continue
		}
		for i, p := range l.patterns {
			if err := ValidGlob(p); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d] %q: %w", l.name, i, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if MatchGlob(p, name) {
			return true
		}
	}
	return false
}

// ErrBadGlob is wrapped by ValidGlob's errors.
var ErrBadGlob = errors.New("invalid path pattern")

// ValidGlob checks a path pattern: slash-separated segments relative to
// the repository's root (no leading or trailing slash, no empty, "." or
// ".." segment), each either "**" or a pattern of path.Match ("*", "?",
// "[a-z]", "\\" escapes), at most MaxPatternLen bytes. "**" inside a
// segment ("a**") is refused: it would mean only "*".
func ValidGlob(pattern string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrBadGlob, why) }
	switch {
	case pattern == "":
		return bad("empty")
	case len(pattern) > MaxPatternLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPatternLen))
	case strings.HasPrefix(pattern, "/"), strings.HasSuffix(pattern, "/"):
		return bad("starts or ends with '/': patterns are relative to the repository's root; write dir/** for a directory")
	}
	for _, seg := range strings.Split(pattern, "/") {
		switch {
		case seg == "**":
		case seg == "", seg == ".", seg == "..":
			return bad("has an empty, '.' or '..' segment")
		case strings.Contains(seg, "**"):
			return bad(fmt.Sprintf("segment %q: '**' must be a whole segment (dir/**/x)", seg))
		default:
			if _, err := path.Match(seg, ""); err != nil {
				return bad(fmt.Sprintf("segment %q: %v", seg, err))
			}
		}
	}
	return nil
}

// MatchGlob reports whether name (slash-separated, relative to the
// repository's root) matches pattern, a glob ValidGlob accepts: a "**"
// segment matches any number of segments, none included ("src/**" matches
// src/a and src/a/b.go, "**/*.md" matches README.md and docs/x.md); any
// other segment matches exactly one segment of name as path.Match does
// ("*" never crosses a '/'). An invalid pattern matches nothing.
func MatchGlob(pattern, name string) bool {
	if ValidGlob(pattern) != nil {
		return false
	}
	pat := strings.Split(pattern, "/")
	segs := strings.Split(name, "/")
	// Wildcard matching over segments, backtracking only to the last
	// "**": O(len(pat) × len(segs)).
	p, s := 0, 0
	star, starS := -1, 0
	for s < len(segs) {
		switch {
		case p < len(pat) && pat[p] == "**":
			star, starS = p, s
			p++
		case p < len(pat) && matchSegment(pat[p], segs[s]):
			p++
			s++
		case star >= 0:
			starS++
			p, s = star+1, starS
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == "**" {
		p++
	}
	return p == len(pat)
}

func matchSegment(pattern, seg string) bool {
	ok, err := path.Match(pattern, seg)
	return err == nil && ok
}
