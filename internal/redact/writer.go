package redact

import (
	"io"
	"strings"
	"sync"
)

// maxHold bounds how much a Writer keeps back while a run of overlapping
// secrets has not ended; past it, the run so far is written as one Mask.
const maxHold = 64 << 10

// Writer returns a writer that passes everything written to it on to w
// with the Redactor's secrets masked, including a secret split across
// several Write calls. To do so it may keep back a tail that could be the
// start of a secret; the returned writer has a Flush method that writes
// that tail out (also called by its Close, which does not close w). With a
// nil Redactor, Writer returns w itself.
//
// The returned writer is safe for concurrent use.
func (r *Redactor) Writer(w io.Writer) io.Writer {
	if r == nil {
		return w
	}
	return &Writer{r: r, w: w}
}

// Writer is the stream redactor returned by Redactor.Writer.
type Writer struct {
	r *Redactor
	w io.Writer

	mu      sync.Mutex
	pending []byte
}

// Write masks the secrets in p and writes what is known to be complete to
// the underlying writer. It reports len(p) written unless the underlying
// writer fails.
func (rw *Writer) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.pending = append(rw.pending, p...)
	out, keep := rw.split(false)
	if err := rw.emit(out, keep); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes out whatever tail Write kept back, masked.
func (rw *Writer) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	out, keep := rw.split(true)
	return rw.emit(out, keep)
}

// Close flushes the writer. It does not close the underlying writer.
func (rw *Writer) Close() error {
	return rw.Flush()
}

func (rw *Writer) emit(out string, keep int) error {
	rest := rw.pending[len(rw.pending)-keep:]
	rw.pending = append(rw.pending[:0], rest...)
	if out == "" {
		return nil
	}
	_, err := io.WriteString(rw.w, out)
	return err
}

// split returns the masked text that can be written now and how many
// bytes at the end of pending must wait for more input.
func (rw *Writer) split(final bool) (string, int) {
	buf := string(rw.pending)
	secrets, maxLen := rw.r.snapshot()
	if len(secrets) == 0 {
		return buf, 0
	}
	spans := find(buf, secrets)
	cut := len(buf)
	if !final {
		cut = holdFrom(buf, secrets, maxLen)
	}
	// A complete run of secrets that reaches past cut may still grow
	// (another secret overlapping its end may be arriving): keep it whole.
	for i, sp := range spans {
		if sp.start < cut && sp.end > cut {
			if len(buf)-sp.start <= maxHold {
				cut = sp.start
			} else {
				cut = sp.end
			}
			spans = spans[:i+1]
			break
		}
	}
	var kept []span
	for _, sp := range spans {
		if sp.end <= cut {
			kept = append(kept, sp)
		}
	}
	return apply(buf[:cut], kept), len(buf) - cut
}

// holdFrom returns the earliest index from which the rest of buf is a
// proper prefix of some secret (len(buf) if there is none): those bytes
// may be the start of a secret split across writes.
func holdFrom(buf string, secrets []string, maxLen int) int {
	for i := max(0, len(buf)-maxLen+1); i < len(buf); i++ {
		tail := buf[i:]
		for _, s := range secrets {
			if len(tail) < len(s) && strings.HasPrefix(s, tail) {
				return i
			}
		}
	}
	return len(buf)
}
