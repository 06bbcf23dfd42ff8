package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/pipeline"
)

// Token is the API's admin token.
func (h *Harness) Token() string { return h.token }

// Authorize adds the admin token to an API request, and the JSON content
// type the API requires of a mutating one.
func (h *Harness) Authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+h.token)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json")
	}
}

// API sends an authorized request to an API path (body may be nil) and
// returns the answer's status and body.
func (h *Harness) API(ctx context.Context, method, path string, body io.Reader) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.APIURL()+path, body)
	if err != nil {
		return 0, "", err
	}
	h.Authorize(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Pipeline reads a pipeline through the API.
func (h *Harness) Pipeline(ctx context.Context, id string) (*pipeline.Pipeline, error) {
	var p pipeline.Pipeline
	if err := h.GetJSON(ctx, "/api/v1/pipelines/"+id, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Pipelines lists the pipelines through the API, newest first.
func (h *Harness) Pipelines(ctx context.Context) ([]*pipeline.Pipeline, error) {
	var ps []*pipeline.Pipeline
	if err := h.GetJSON(ctx, "/api/v1/pipelines", &ps); err != nil {
		return nil, err
	}
	return ps, nil
}

// Cancel asks Runway to cancel a pipeline (POST
// /api/v1/pipelines/{id}/cancel); any 2xx answer is a yes.
func (h *Harness) Cancel(ctx context.Context, id string) error {
	status, body, err := h.API(ctx, http.MethodPost, "/api/v1/pipelines/"+id+"/cancel", nil)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("cancelling pipeline %s: %d %s", id, status, strings.TrimSpace(body))
	}
	return nil
}

// GetJSON reads an API path into v.
func (h *Harness) GetJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.APIURL()+path, nil)
	if err != nil {
		return err
	}
	h.Authorize(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// WaitPipeline polls the pipeline until it ends (Ended), calling onChange
// with every new state.
func (h *Harness) WaitPipeline(ctx context.Context, id string, onChange func(*pipeline.Pipeline)) (*pipeline.Pipeline, error) {
	var last string
	for {
		p, err := h.Pipeline(ctx, id)
		if err != nil {
			return nil, err
		}
		if key := stateKey(p); key != last {
			last = key
			if onChange != nil {
				onChange(p)
			}
		}
		if Ended(p) {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitStep polls the pipeline until cond holds of it (true) or it ends
// first (false).
func (h *Harness) WaitStep(ctx context.Context, id string, cond func(*pipeline.Pipeline) bool) (*pipeline.Pipeline, bool, error) {
	for {
		p, err := h.Pipeline(ctx, id)
		if err != nil {
			return nil, false, err
		}
		if cond(p) {
			return p, true, nil
		}
		if Ended(p) {
			return p, false, nil
		}
		select {
		case <-ctx.Done():
			return p, false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func stateKey(p *pipeline.Pipeline) string {
	var b strings.Builder
	b.WriteString(string(p.Phase))
	for _, s := range p.Steps {
		b.WriteString(string(s.Phase))
	}
	return b.String()
}
