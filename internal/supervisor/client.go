package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// clientTimeout bounds Get and List, whose signatures (shared with
// *Supervisor) carry no context.
const clientTimeout = 10 * time.Second

// defaultCallTimeout bounds a call whose context has no deadline: more than
// a Remove takes (removeBound).
const defaultCallTimeout = 3 * time.Minute

// ErrUnreachable marks a call whose request did not reach the supervisor
// or got no answer (its data plane restarting, say): trying again later
// may succeed.
var ErrUnreachable = errors.New("the supervisor could not be reached")

// Client is a Supervisor served by Handler on a unix socket, with the
// same methods. Errors carry the server's message; a server's ErrNotFound,
// ErrConflict, ErrClosed and ValidationError come back as errors that
// errors.Is/As recognise.
type Client struct {
	http *http.Client
}

// NewClient returns a client of the supervisor API on the unix socket at
// socketPath.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Apply is Supervisor.Apply.
func (c *Client) Apply(ctx context.Context, sp Spec) (Status, error) {
	body, err := json.Marshal(sp)
	if err != nil {
		return Status{}, fmt.Errorf("encoding workload %s: %w", sp.ID, err)
	}
	var st Status
	if err := c.do(ctx, http.MethodPut, workloadPath(sp.ID), body, &st); err != nil {
		return Status{}, fmt.Errorf("applying workload %s: %w", sp.ID, err)
	}
	return st, nil
}

// WaitReady is Supervisor.WaitReady. The wait is bounded by ctx's
// deadline, at most 10m (the server's limit).
func (c *Client) WaitReady(ctx context.Context, id string) (Status, error) {
	// In rounds shorter than the admin socket's write timeout (30s), so
	// a long wait is not cut off by the server mid-answer.
	for {
		round := waitRound
		last := false
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= round {
			round, last = max(time.Until(dl), time.Millisecond), true
		}
		var st Status
		err := c.do(ctx, http.MethodPost, workloadPath(id)+waitSuffix+"?timeout="+url.QueryEscape(round.String()), nil, &st)
		var re *remoteError
		if errors.As(err, &re) && re.status != nil {
			st = *re.status
		}
		if err != nil && !last && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			continue // this round's timeout, not the caller's
		}
		return st, err
	}
}

// waitRound is the longest wait one WaitReady request asks for.
const waitRound = 20 * time.Second

// Remove is Supervisor.Remove.
func (c *Client) Remove(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, workloadPath(id), nil, nil); err != nil {
		return fmt.Errorf("removing workload %s: %w", id, err)
	}
	return nil
}

// Get is Supervisor.Get; an unreachable server reads as an unknown
// workload (GetContext tells them apart).
func (c *Client) Get(id string) (Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	st, ok, _ := c.GetContext(ctx, id)
	return st, ok
}

// GetContext is Get with a context and the error.
func (c *Client) GetContext(ctx context.Context, id string) (Status, bool, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, workloadPath(id), nil, &st)
	if errors.Is(err, ErrNotFound) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, fmt.Errorf("getting workload %s: %w", id, err)
	}
	return st, true, nil
}

// List is Supervisor.List; an unreachable server reads as no workloads
// (ListContext tells them apart).
func (c *Client) List(group string) []Status {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	out, _ := c.ListContext(ctx, group)
	return out
}

// ListContext is List with a context and the error.
func (c *Client) ListContext(ctx context.Context, group string) ([]Status, error) {
	var out []Status
	if err := c.do(ctx, http.MethodGet, apiPrefix+"?group="+url.QueryEscape(group), nil, &out); err != nil {
		return nil, fmt.Errorf("listing workloads: %w", err)
	}
	return out, nil
}

// workloadPath is the API path of id (its characters need no escaping).
func workloadPath(id string) string { return apiPrefix + "/" + id }

// remoteError is an error answered by the server.
type remoteError struct {
	code   int
	msg    string
	status *Status
}

func (e *remoteError) Error() string { return e.msg }

// Is makes the server's sentinel errors recognisable.
func (e *remoteError) Is(target error) bool {
	switch e.code {
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrConflict && e.status == nil
	case http.StatusServiceUnavailable:
		return target == ErrClosed
	case http.StatusGatewayTimeout:
		return target == context.DeadlineExceeded
	}
	return false
}

func (e *remoteError) As(target any) bool {
	if ve, ok := target.(**ValidationError); ok && e.code == http.StatusBadRequest {
		*ve = &ValidationError{msg: e.msg}
		return true
	}
	if ee, ok := target.(**ExitError); ok && e.code == http.StatusConflict && e.status != nil {
		*ee = &ExitError{ID: e.status.ID, LastExit: e.status.LastExit, LogTail: e.status.LogTail}
		return true
	}
	return false
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	if _, ok := ctx.Deadline(); !ok {
		// A data plane that accepts but does not answer must not wedge
		// the caller (who may hold an environment's lock).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://supervisor"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return err // the caller gave up; the server may be fine
		}
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading the supervisor's answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			ae.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return &remoteError{code: resp.StatusCode, msg: ae.Error, status: ae.Status}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the supervisor's answer: %w", err)
	}
	return nil
}
