package main

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// pingHandler answers GET /ping with the name in pingtable, as JSON:
// {"value":"pong"}.
type pingHandler struct {
	db rowQuerier
}

func newPingHandler(db rowQuerier) *pingHandler { return &pingHandler{db: db} }

type pingResponse struct {
	Value string `json:"value"`
}

func (h *pingHandler) serve(w http.ResponseWriter, r *http.Request) error {
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
