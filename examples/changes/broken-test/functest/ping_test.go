package functest

import (
	"net/http"
	"testing"
)

func TestPing(t *testing.T) {
	app := newApp(t)
	tests := []struct {
		name          string
		path          string
		wantStatus    int
		wantMediaType string
		wantBody      string
	}{
		{name: "ping answers PONG!", path: "/ping", wantStatus: http.StatusOK, wantMediaType: "text/plain", wantBody: "PONG!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := app.get(t, tt.path)
			if got.status != tt.wantStatus {
				t.Fatalf("GET %s: status = %d, want %d (body %q)", tt.path, got.status, tt.wantStatus, got.body)
			}
			if mt := mediaType(got.contentType); mt != tt.wantMediaType {
				t.Errorf("GET %s: Content-Type = %q, want %s", tt.path, got.contentType, tt.wantMediaType)
			}
			if got.body != tt.wantBody {
				t.Errorf("GET %s: body = %q, want %q", tt.path, got.body, tt.wantBody)
			}
		})
	}
}
