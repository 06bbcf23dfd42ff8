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
	// Every body takes a slot, so what all requests hold together is
	// bounded (Bodies × LargeBody + LargeBodies × MaxBody) whatever the
	// number of connections.
	releaseBody := take(h.bodies)
	if releaseBody == nil {
		return nil, release, busy(r.ContentLength, "webhook bodies")
	}
	var buf bytes.Buffer
	if r.ContentLength > LargeBody {
		releaseLarge := take(h.large)
		if releaseLarge == nil {
			releaseBody()
			return nil, release, busy(r.ContentLength, "large webhook bodies")
		}
		release = func() { releaseLarge(); releaseBody() }
	} else {
		release = releaseBody
	}
	// Memory follows the bytes that arrive: a declared length alone never
	// allocates more than initialBuffer.
	buf.Grow(int(min(max(r.ContentLength, 0), initialBuffer)))
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
			releaseLarge := take(h.large)
			if releaseLarge == nil {
				return nil, release, busy(-1, "large webhook bodies")
			}
			releaseBody := release
			release = func() { releaseLarge(); releaseBody() }
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

// initialBuffer is the most a body's buffer holds before bytes arrive.
const initialBuffer = 64 << 10

// take takes a slot of slots without waiting and returns its release
// (idempotent), or nil if every slot is taken.
func take(slots chan struct{}) func() {
	select {
	case slots <- struct{}{}:
		return sync.OnceFunc(func() { <-slots })
	default:
		return nil
	}
}

func tooLarge(err error) *reply {
	return refuse(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("body exceeds GitHub's webhook payload limit of %d bytes", MaxBody), fmt.Errorf("reading body: %w", err))
}

func busy(length int64, what string) *reply {
	return refuse(http.StatusServiceUnavailable, "too many "+what+" are being read; try again later",
		fmt.Errorf("no slot free for a body of length %d (-1: unknown) among %s", length, what))
}

func unreadable(err error) *reply {
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return tooLarge(err)
	}
	return refuse(http.StatusBadRequest, "reading body failed", fmt.Errorf("reading body: %w", err))
}
