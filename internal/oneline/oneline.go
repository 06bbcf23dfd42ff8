// Package oneline turns text from outside (abort reasons, reporter
// messages) into one short line that is safe to put in a commit message,
// a status field, a log line or a reply: no line breaks, no control
// characters, bounded length.
package oneline

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxReason is the documented length limit, in bytes, of an abort reason or
// a reporter message once cleaned.
const MaxReason = 200

// Clean returns s as one line of at most limit bytes: every control or
// line-breaking character (including CR, LF, tab, U+2028/U+2029 and invalid
// UTF-8) becomes a space, runs of spaces collapse to one, leading and
// trailing spaces go, and the result is cut at a rune boundary so that it
// is at most limit bytes long. A limit of zero or less means no length limit.
func Clean(s string, limit int) string {
	var b strings.Builder
	if limit > 0 {
		b.Grow(min(len(s), limit))
	}
	space := false
	for i, w := 0, 0; i < len(s); i += w {
		r, size := utf8.DecodeRuneInString(s[i:])
		w = size
		if r == utf8.RuneError && size == 1 || unicode.IsControl(r) || unicode.IsSpace(r) ||
			unicode.In(r, unicode.Zl, unicode.Zp, unicode.Cf) {
			space = b.Len() > 0
			continue
		}
		add := utf8.RuneLen(r)
		if space {
			add++
		}
		if limit > 0 && b.Len()+add > limit {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Reason returns s cleaned and cut to MaxReason bytes.
func Reason(s string) string {
	return Clean(s, MaxReason)
}
