package harness

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// PushResponse is Runway's answer to a webhook.
type PushResponse struct {
	// Status is the HTTP status, Body the answer.
	Status int    `json:"-"`
	Body   string `json:"-"`
	// Outcome is the answer's "status": accepted, queued, ignored,
	// duplicate...; Reason says why, for ignored and queued.
	Outcome  string `json:"status"`
	Reason   string `json:"reason"`
	Pipeline string `json:"pipeline"`
}

// Push delivers a signed GitHub push webhook for commit on branch of the
// example app's repository.
func (h *Harness) Push(ctx context.Context, branch, commit, message string) (PushResponse, error) {
	return h.PushApp(ctx, AppName, branch, commit, message)
}

// PushSigned is Push with the signature made from secret.
func (h *Harness) PushSigned(ctx context.Context, branch, commit, message, secret string) (PushResponse, error) {
	payload, err := h.pushPayload(ctx, Owner+"/"+AppName, h.AppURL, branch, commit, message)
	if err != nil {
		return PushResponse{}, err
	}
	return h.Deliver(ctx, "push", payload, secret)
}

// PushApp delivers a signed push webhook for commit on branch of app's
// repository.
func (h *Harness) PushApp(ctx context.Context, app, branch, commit, message string) (PushResponse, error) {
	payload, err := h.pushPayload(ctx, Owner+"/"+app, h.apps[app], branch, commit, message)
	if err != nil {
		return PushResponse{}, err
	}
	return h.Deliver(ctx, "push", payload, h.Secret)
}

// PushState delivers the state repository's push webhook for its current
// head (GitHub sends it after every push to the state repository).
func (h *Harness) PushState(ctx context.Context) (PushResponse, error) {
	head, err := headOf(h.StateURL, "main")
	if err != nil {
		return PushResponse{}, err
	}
	payload, err := h.pushPayload(ctx, StateRepoName, h.StateURL, "main", head, "state repository push")
	if err != nil {
		return PushResponse{}, err
	}
	return h.Deliver(ctx, "push", payload, h.Secret)
}

// pushPayload is GitHub's push event for one commit of the repository at
// url: before is its parent and commits lists the files it added,
// modified and removed, as GitHub sends them (path filters read them). A
// commit not in the repository gets an all-zero before and no file lists.
func (h *Harness) pushPayload(_ context.Context, fullName, url, branch, commit, message string) ([]byte, error) {
	before := strings.Repeat("0", 40)
	var commits []map[string]any
	if url != "" {
		if c, err := describeCommit(url, commit); err == nil {
			if c.parent != "" {
				before = c.parent
			}
			commits = append(commits, map[string]any{
				"id": commit, "message": message, "distinct": true,
				"added": c.added, "modified": c.modified, "removed": c.removed,
			})
		}
	}
	name := fullName[strings.Index(fullName, "/")+1:]
	payload := map[string]any{
		"ref": "refs/heads/" + branch, "before": before, "after": commit, "deleted": false,
		"repository":  map[string]any{"name": name, "full_name": fullName, "clone_url": "https://github.com/" + fullName + ".git", "owner": map[string]any{"login": Owner}},
		"head_commit": map[string]any{"id": commit, "message": message},
		"pusher":      map[string]any{"name": "demo"},
	}
	if commits != nil {
		payload["commits"] = commits
		payload["head_commit"] = commits[0]
	}
	return json.Marshal(payload)
}

// Deliver posts a webhook body with its signature headers.
func (h *Harness) Deliver(ctx context.Context, event string, payload []byte, secret string) (PushResponse, error) {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.APIURL()+"/webhooks/github", bytes.NewReader(payload))
	if err != nil {
		return PushResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", randomHex(16))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := h.client.Do(req)
	if err != nil {
		return PushResponse{}, fmt.Errorf("delivering webhook: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := PushResponse{}
	_ = json.Unmarshal(body, &out)
	out.Status, out.Body = resp.StatusCode, string(body)
	return out, nil
}
