package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/runway-cd/runway/internal/runtime"
)

// apiError wraps err, from a call of the API server, with what was being
// done; an error that is no answer of the API server (it was not reached,
// the call timed out) or says it is overloaded or broken also wraps
// runtime.ErrUnavailable: trying again later may succeed, and it says
// nothing of what was asked.
func apiError(what string, err error) error {
	if unreachable(err) || terminating(err) {
		return fmt.Errorf("%s: %w: %w", what, runtime.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unreachable reports whether err says the API server could not answer.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true // a transport error, or our own bound on the call
	}
	code := st.Status().Code
	return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests ||
		apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
}

// terminating reports whether err is the API server's refusal to make
// something in a namespace being deleted (403, cause
// NamespaceTerminating): a Destroy under way, not the version's fault.
func terminating(err error) bool {
	return err != nil && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}

// registryUnavailable reports whether err, from building, pulling or
// pushing an image, says the registry could not be reached or failed
// (5xx, 429), or the base image could not be pulled: nothing of the
// version is at fault, and a later try may succeed.
func registryUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode >= http.StatusInternalServerError || te.StatusCode == http.StatusTooManyRequests {
			return true
		}
	}
	var ne net.Error
	var ue *url.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.As(err, &oe) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// The base is the operator's, the same for every app: failing to
	// pull it is never a version's fault. (image.Builder says so in its
	// message only.)
	return strings.Contains(err.Error(), "pulling base image ")
}

// recheck is how often a wait looks again without a change in the
// caches: a bound on what an event missed costs, not the way it waits.
const recheck = time.Second

// await calls cond at once, on every change of the caches and at least
// every recheck, until it reports done or an error, or ctx ends (then
// ctx's error, with what was awaited and the last state cond reported).
func (r *Runtime) await(ctx context.Context, what string, cond func() (done bool, state string, err error)) error {
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	for {
		changed := r.cache.next()
		done, state, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			if state != "" {
				state = " (" + state + ")"
			}
			return fmt.Errorf("waiting for %s%s: %w", what, state, context.Cause(ctx))
		case <-changed:
		case <-tick.C:
		}
	}
}

// cleanupTimeout bounds the removal of what a failed call made, which
// runs even when the caller's context has ended.
const cleanupTimeout = 2 * time.Minute

// cleanupContext is a context for removing what a failed call made: not
// ended by the caller's end, bounded.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}
