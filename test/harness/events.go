package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/events"
)

// eventsPage is how many events one API call asks for.
const eventsPage = 500

// Events lists the events after seq (0: all kept), oldest first, through
// GET /api/v1/events?since=N&limit=M, page by page.
func (h *Harness) Events(ctx context.Context, since uint64) ([]events.Event, error) {
	var all []events.Event
	// Bounded: the recorder keeps events.Capacity events.
	for range events.Capacity/eventsPage + 2 {
		page, err := h.eventsPage(ctx, since)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < eventsPage {
			return all, nil
		}
		since = page[len(page)-1].Seq
	}
	return all, nil
}

func (h *Harness) eventsPage(ctx context.Context, since uint64) ([]events.Event, error) {
	status, body, err := h.API(ctx, http.MethodGet, fmt.Sprintf("/api/v1/events?since=%d&limit=%d", since, eventsPage), nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/events: %d %s", status, strings.TrimSpace(body))
	}
	return decodeEvents([]byte(body))
}

// decodeEvents reads a JSON array of events, or an object holding one in
// "events".
func decodeEvents(body []byte) ([]events.Event, error) {
	body = bytes.TrimSpace(body)
	var list []events.Event
	if len(body) > 0 && body[0] == '{' {
		var obj struct {
			Events []events.Event `json:"events"`
		}
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, fmt.Errorf("decoding events: %w", err)
		}
		return obj.Events, nil
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("decoding events: %w", err)
	}
	return list, nil
}

// EventMatch selects events: empty fields match anything.
type EventMatch struct {
	Kind, Name, Reason string
}

// Matches reports whether e is selected.
func (m EventMatch) Matches(e events.Event) bool {
	return (m.Kind == "" || e.Kind == m.Kind) && (m.Name == "" || e.Name == m.Name) && (m.Reason == "" || e.Reason == m.Reason)
}

func (m EventMatch) String() string {
	return fmt.Sprintf("%s %s %s", m.Kind, m.Name, m.Reason)
}

// FindEvent returns the first event of evs that m selects.
func FindEvent(evs []events.Event, m EventMatch) (events.Event, bool) {
	for _, e := range evs {
		if m.Matches(e) {
			return e, true
		}
	}
	return events.Event{}, false
}

// LastSeq is the sequence number of the newest event (0: none yet), to
// wait for what comes after it.
func (h *Harness) LastSeq(ctx context.Context) (uint64, error) {
	evs, err := h.Events(ctx, 0)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	return evs[len(evs)-1].Seq, nil
}

// WaitEvent polls the events after since until one that m selects is
// recorded, for at most limit, and returns it.
func (h *Harness) WaitEvent(ctx context.Context, since uint64, m EventMatch, limit time.Duration) (events.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		evs, err := h.Events(ctx, since)
		if err != nil && ctx.Err() == nil {
			return events.Event{}, err
		}
		if e, ok := FindEvent(evs, m); ok {
			return e, nil
		}
		if len(evs) > 0 {
			since = evs[len(evs)-1].Seq
		}
		select {
		case <-ctx.Done():
			return events.Event{}, fmt.Errorf("no event %s within %s: %w", m, limit, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
