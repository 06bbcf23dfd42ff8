package sqlite_test

import (
	"errors"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/pipeline"
)

func TestPipelineByVersion(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	for _, p := range []*pipeline.Pipeline{
		{ID: "hello-a", App: "hello", Version: "v1", Phase: pipeline.Failed, Created: time.Unix(1, 0)},
		{ID: "hello-b", App: "hello", Phase: pipeline.Pending, Created: time.Unix(2, 0)},
	} {
		if err := db.SavePipeline(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		version string
		wantID  string
	}{
		{name: "known version", version: "v1", wantID: "hello-a"},
		{name: "unknown version", version: "v2"},
		{name: "empty version matches no pipeline without one", version: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := db.PipelineByVersion(ctx, tt.version)
			if tt.wantID == "" {
				if !errors.Is(err, pipeline.ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil || p.ID != tt.wantID {
				t.Fatalf("got %v, %v; want %s", p, err, tt.wantID)
			}
		})
	}
}
