package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/webhook"
)

// memDeliveries is a Deliveries in a map.
type memDeliveries struct {
	mu sync.Mutex
	m  map[string]string
}

func (d *memDeliveries) LookupDelivery(_ context.Context, delivery string) (string, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.m[delivery]
	return id, ok, nil
}

func (d *memDeliveries) SaveDelivery(_ context.Context, delivery, pipelineID string, _ time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]string{}
	}
	d.m[delivery] = pipelineID
	return nil
}

// verdicts are the Verifier answers a fuzz input picks from.
var verdicts = []error{
	nil,
	fmt.Errorf("fuzz: %w", webhook.ErrUnknownCommit),
	fmt.Errorf("fuzz: %w", webhook.ErrNotOnBranch),
	errors.New("fuzz: repository unreachable"),
}

// FuzzWebhook sends arbitrary bodies and headers, with the real signature
// for inputs that ask for one. Whatever comes in: no panic, a JSON answer,
// a 2xx or 4xx status (5xx only when the verifier or the path filter could not check), and a
// body without a valid signature never reaches the verifier or the starter;
// a pipeline starts only for a commit the verifier accepted, the path
// filter reads changes only of a verified push, and a push reconciles only
// when signed, without a pipeline.
func FuzzWebhook(f *testing.F) {
	push := pushPayload("o/r", "refs/heads/main", sha)
	const js, form = "application/json", "application/x-www-form-urlencoded"
	for v := range verdicts {
		f.Add([]byte(push), "push", js, "d1", "", true, uint8(v))
	}
	f.Add([]byte(push), "push", js, "d1", sign([]byte("wrong secret....."), push), false, uint8(0))
	f.Add([]byte(push), "push", js, "d1", "", false, uint8(0))
	f.Add([]byte(push), "push", js, "d1", "sha256=", false, uint8(0))
	f.Add([]byte(push), "push", js, "d1", "sha256="+strings.Repeat("0", 64), false, uint8(0))
	f.Add([]byte("payload="+url.QueryEscape(push)), "push", form, "d1", "", true, uint8(0))
	f.Add([]byte("payload=%zz"), "push", form, "d1", "", true, uint8(0))
	f.Add([]byte(push), "push", "text/plain", "d1", "", true, uint8(0))
	f.Add([]byte(push), "push", js, "", "", true, uint8(0))
	f.Add([]byte(push), "", js, "d1", "", true, uint8(0))
	f.Add([]byte(`{"zen":"x"}`), "ping", js, "d1", "", true, uint8(0))
	f.Add([]byte(`{"action":"opened"}`), "issues", js, "d1", "", true, uint8(0))
	f.Add([]byte(`{"ref":`), "push", js, "d1", "", true, uint8(0))
	f.Add([]byte(pushPayload("o/r", "refs/heads/main", strings.Repeat("0", 40))), "push", js, "d1", "", true, uint8(0))
	f.Add([]byte(pushPayload("o/r", "refs/heads/main", strings.ToUpper(sha))), "push", js, "d1", "", true, uint8(0))
	f.Add([]byte(pushPayload("o/r", "refs/tags/v1", sha)), "push", js, "d1", "", true, uint8(0))
	f.Add([]byte(pushPayload("o/r", "refs/heads/other", sha)), "push", js, "d1", "", true, uint8(0))
	f.Add([]byte{}, "push", js, "d1", "", true, uint8(0))
	f.Add([]byte(pushPayload("o/state", "refs/heads/main", sha)), "push", js, "d1", "", true, uint8(0))
	f.Add([]byte(pushPayload("o/state", "refs/heads/main", sha)), "push", js, "d1", "", false, uint8(0))
	f.Add([]byte(pushChanging("o/r", "refs/heads/main", before, []string{"docs/a.md"})), "push", js, "d1", "", true, uint8(1))
	f.Add([]byte(pushChanging("o/r", "refs/heads/main", before, []string{"src/a.go"})), "push", js, "d1", "", true, uint8(1))

	f.Fuzz(func(t *testing.T, body []byte, event, ctype, id, sig string, signIt bool, verdict uint8) {
		real := sign(secret, string(body))
		if signIt {
			sig = real
		}
		st, passes := &starter{}, &reconciler{}
		v := &verifier{errs: []error{verdicts[int(verdict)%len(verdicts)]}}
		// The verdict's high bits pick what git says changed: the
		// filter's answer, "cannot tell" (the payload's list) or a failure.
		diffErrs := []error{nil, webhook.ErrUnknownCommit, webhook.ErrTooManyPaths, errors.New("fuzz: mirror unreadable")}
		diffErr := diffErrs[int(verdict/4)%len(diffErrs)]
		pf := &paths{filter: webhook.PathFilter{Paths: []string{"src/**"}, IgnorePaths: []string{"**/*.md"}}, changed: []string{"README.md"}, err: diffErr}
		h, err := webhook.NewHandler(webhook.Options{
			Secret: secret, Tracker: tracker{"o/r@main": true}, Verifier: v, Starter: st, Deliveries: &memDeliveries{},
			Paths: pf, State: webhook.StateRepo{Repo: "o/state", Reconciler: passes},
		})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", id)
		req.Header.Set("X-Hub-Signature-256", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		verified := len(v.called()) > 0
		unreachable := int(verdict)%len(verdicts) == 3
		switch s := rec.Code; {
		case s >= 200 && s < 300, s >= 400 && s < 500:
		case s == http.StatusServiceUnavailable && verified && unreachable:
		case s == http.StatusServiceUnavailable && pf.called() > 0 && diffErr == diffErrs[3]:
		default:
			t.Fatalf("status %d (verifier called: %v, verdict %d): %s", s, verified, verdict, rec.Body)
		}
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer %q is not a JSON object: %v", rec.Body, err)
		}
		for k, v := range answer {
			if _, ok := v.(string); !ok && k != "ignored" {
				t.Fatalf("answer %q: field %s is not a string", rec.Body, k)
			}
		}
		if !validSignature(sig, real) && (verified || len(st.started()) > 0 || passes.count() > 0 || pf.called() > 0) {
			t.Fatalf("a body without a valid signature reached the verifier (%v), the starter (%d), the path filter (%d) or the reconciler (%d)",
				v.called(), len(st.started()), pf.called(), passes.count())
		}
		if passes.count() > 0 && (len(st.started()) > 0 || verified) {
			t.Fatalf("a push both reconciled and reached the verifier (%v) or the starter (%d)", v.called(), len(st.started()))
		}
		if pf.called() > 0 && !verified {
			t.Fatal("the path filter read the changes of a push the verifier did not check")
		}
		if len(st.started()) > 0 && (verdict%uint8(len(verdicts)) != 0 || rec.Code != http.StatusAccepted) {
			t.Fatalf("a pipeline started with verdict %d, status %d", verdict, rec.Code)
		}
	})
}

// validSignature tells whether header carries the HMAC in want
// (sha256=<hex>), hex in either case.
func validSignature(header, want string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	a, err := hex.DecodeString(got)
	b, _ := hex.DecodeString(strings.TrimPrefix(want, "sha256="))
	return err == nil && hmac.Equal(a, b)
}
