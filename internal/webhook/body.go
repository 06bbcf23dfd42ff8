package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-github/v75/github"
)

// signature decodes X-Hub-Signature-256 (sha256=<64 hex digits>), so a
// request without a well-formed one is refused before its body is read.
func signature(r *http.Request) ([]byte, *reply) {
	v := r.Header.Get(github.SHA256SignatureHeader)
	if v == "" {
		return nil, refuse(http.StatusUnauthorized, "missing X-Hub-Signature-256 header", nil)
	}
	h, ok := strings.CutPrefix(v, "sha256=")
	sig, err := hex.DecodeString(h)
	if !ok || err != nil || len(sig) != sha256.Size {
		return nil, refuse(http.StatusUnauthorized, "malformed X-Hub-Signature-256 header: want sha256=<64 hex digits>", nil)
	}
	return sig, nil
}

// readSigned reads the body through the HMAC into one buffer and returns
// it if it matches sig. A body over LargeBody is read only with a large-body
// slot: a declared Content-Length over it asks for one before reading, a
// body of unknown length once it passes LargeBody; without a free slot the
// answer is 503. The slot is held until release is called (release is
// never nil and may be called more than once).
func (h *Handler) readSigned(w http.ResponseWriter, r *http.Request, sig []byte) (payload []byte, release func(), rep *reply) {
	release = func() {}
	if r.ContentLength > MaxBody {
		return nil, release, tooLarge(fmt.Errorf("content length %d", r.ContentLength))
	}
	var buf bytes.Buffer
	if r.ContentLength > LargeBody {
		if release = h.acquire(); release == nil {
			return nil, func() {}, busy(r.ContentLength)
		}
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	mac := hmac.New(sha256.New, h.secret)
	dst := io.MultiWriter(&buf, mac)
	body := http.MaxBytesReader(w, r.Body, MaxBody)

	// The first LargeBody bytes and one more tell a large body of unknown
	// length apart.
	n, err := io.Copy(dst, io.LimitReader(body, LargeBody+1))
	if err != nil {
		return nil, release, unreadable(err)
	}
	if n > LargeBody {
		if r.ContentLength <= LargeBody { // unknown length: it is large now
			if release = h.acquire(); release == nil {
				return nil, func() {}, busy(-1)
			}
		}
		if _, err := io.Copy(dst, body); err != nil {
			return nil, release, unreadable(err)
		}
	}
	if !hmac.Equal(mac.Sum(nil), sig) {
		return nil, release, refuse(http.StatusUnauthorized, "invalid signature", nil)
	}
	return buf.Bytes(), release, nil
}

// acquire takes a large-body slot without waiting and returns its release
// (idempotent), or nil if every slot is taken.
func (h *Handler) acquire() func() {
	select {
	case h.large <- struct{}{}:
		return sync.OnceFunc(func() { <-h.large })
	default:
		return nil
	}
}

func tooLarge(err error) *reply {
	return refuse(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("body exceeds GitHub's webhook payload limit of %d bytes", MaxBody), fmt.Errorf("reading body: %w", err))
}

func busy(length int64) *reply {
	return refuse(http.StatusServiceUnavailable, "too many large webhook bodies are being read; try again later",
		fmt.Errorf("no large-body slot free for a body of length %d (-1: unknown)", length))
}

func unreadable(err error) *reply {
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return tooLarge(err)
	}
	return refuse(http.StatusBadRequest, "reading body failed", fmt.Errorf("reading body: %w", err))
}
