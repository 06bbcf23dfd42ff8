package main

import "net/http"

// pingHandler answers GET /ping with the name in pingtable, as text.
type pingHandler struct {
	db rowQuerier
}

func newPingHandler(db rowQuerier) *pingHandler { return &pingHandler{db: db} }

func (h *pingHandler) serve(w http.ResponseWriter, r *http.Request) error {
	name, err := readPingName(r.Context(), h.db)
	if err != nil {
		return err
	}
	return writeText(w, name)
}
