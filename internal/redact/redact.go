// Package redact removes known secrets (the webhook secret, API and
// reporter tokens, database passwords) from text before it is stored,
// served or logged: from strings, from streams such as step logs, and from
// slog records. A nil *Redactor is valid and redacts nothing, so callers
// never need to check for one.
package redact

import (
	"sort"
	"strings"
	"sync"
)

// Mask replaces every occurrence of a secret.
const Mask = "[REDACTED]"

// MinLen is the shortest secret Add accepts: shorter strings would match
// ordinary text far too often to be worth hiding.
const MinLen = 8

// Redactor holds the secrets to hide. It is safe for concurrent use;
// secrets added later apply to writers and handlers created earlier.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
	maxLen  int
}

// New returns a Redactor that knows no secret yet.
func New() *Redactor {
	return &Redactor{}
}

// Add makes the Redactor hide each of secrets from now on. Strings shorter
// than MinLen and secrets already known are ignored.
func (r *Redactor) Add(secrets ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(s) < MinLen || contains(r.secrets, s) {
			continue
		}
		r.secrets = append(r.secrets, s)
		r.maxLen = max(r.maxLen, len(s))
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// snapshot returns the current secrets and the length of the longest.
// The slice is never modified in place (Add only appends past its length),
// so it may be read without the lock.
func (r *Redactor) snapshot() ([]string, int) {
	if r == nil {
		return nil, 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.secrets[:len(r.secrets):len(r.secrets)], r.maxLen
}

// String returns s with every occurrence of every secret replaced by Mask.
// Where secrets overlap, the whole covered run becomes one Mask.
func (r *Redactor) String(s string) string {
	secrets, _ := r.snapshot()
	if len(secrets) == 0 {
		return s
	}
	spans := find(s, secrets)
	if len(spans) == 0 {
		return s
	}
	return apply(s, spans)
}

// span is a half-open byte range [start, end) covered by secrets.
type span struct{ start, end int }

// find returns the merged, sorted ranges of s covered by any secret.
func find(s string, secrets []string) []span {
	var spans []span
	for _, sec := range secrets {
		for off := 0; ; {
			i := strings.Index(s[off:], sec)
			if i < 0 {
				break
			}
			start := off + i
			spans = append(spans, span{start, start + len(sec)})
			off = start + 1
		}
	}
	if len(spans) < 2 {
		return spans
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		last := &merged[len(merged)-1]
		if sp.start <= last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// apply replaces each span of s by Mask.
func apply(s string, spans []span) string {
	var b strings.Builder
	b.Grow(len(s))
	prev := 0
	for _, sp := range spans {
		b.WriteString(s[prev:sp.start])
		b.WriteString(Mask)
		prev = sp.end
	}
	b.WriteString(s[prev:])
	return b.String()
}
