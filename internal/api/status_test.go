package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// TestToStatus pins the error kinds the API answers with by sentinel,
// wrapped as the stores and controllers wrap them.
func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"analysis run not found", fmt.Errorf("reading analysis run %q: %w", "x", analysis.ErrRunNotFound), http.StatusNotFound},
		{"pipeline not found", fmt.Errorf("reading pipeline: %w", pipeline.ErrNotFound), http.StatusNotFound},
		{"no rollout", fmt.Errorf("promoting: %w", rollout.ErrNoRollout), http.StatusNotFound},
		{"api not found", fmt.Errorf("%w: environment", ErrNotFound), http.StatusNotFound},
		{"pipeline done", fmt.Errorf("cancelling: %w", pipeline.ErrDone), http.StatusConflict},
		{"bad request", fmt.Errorf("%w: since", ErrBadRequest), http.StatusBadRequest},
		{"anything else", errors.New("disk on fire"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := toStatus(tt.err); got != tt.want {
				t.Errorf("toStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
