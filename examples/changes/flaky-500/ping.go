package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
)

// pingHandler answers GET /ping like the json-pong change, but fails on
// purpose: 30% of the requests a process serves get a 500 (the 3rd, 6th and
// 9th of every 10). The first requests succeed, so staging's functional test
// passes and only the canary's analysis can catch it.
type pingHandler struct {
	db    rowQuerier
	count atomic.Uint64
}

func newPingHandler(db rowQuerier) *pingHandler { return &pingHandler{db: db} }

type pingResponse struct {
	Value string `json:"value"`
}

func (h *pingHandler) serve(w http.ResponseWriter, r *http.Request) error {
	if n := (h.count.Add(1) - 1) % 10; n == 2 || n == 5 || n == 8 {
		return &httpError{Code: http.StatusInternalServerError, Message: "injected failure"}
	}
	name, err := readPingName(r.Context(), h.db)
	if err != nil {
		return err
	}
	body, err := json.Marshal(pingResponse{Value: name})
	if err != nil {
		return fmt.Errorf("encoding ping response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(body)
	return err
}
