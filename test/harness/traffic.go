package harness

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/runway-cd/runway/internal/demo"
)

// Get fetches path from an app through the gateway with the given Host.
func (h *Harness) Get(ctx context.Context, host, path string) (status int, body, version string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.GatewayAddr()+path, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = host
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Runway-Version"), nil
}

// Traffic counts the answers of requests sent until stopped.
type Traffic = demo.Traffic

// StartTraffic sends a request to production every 20 ms, bounded to 10
// minutes, until Stop.
func (h *Harness) StartTraffic(ctx context.Context) *Traffic {
	return h.StartTrafficEvery(ctx, 20*time.Millisecond, 10*time.Minute)
}

// StartTrafficEvery sends a request to the example app's production every
// interval, for at most limit, until Stop.
func (h *Harness) StartTrafficEvery(ctx context.Context, interval, limit time.Duration) *Traffic {
	return demo.SendTraffic(ctx, interval, limit, func(ctx context.Context) (string, int, error) {
		status, _, version, err := h.Get(ctx, h.ProductionHost(), "/ping")
		return version, status, err
	})
}

// Listening reports whether something accepts connections on addr.
func Listening(addr string) bool { return demo.Listening(addr) }

// Leftovers lists the processes that still run for an environment (every
// environment when env is "") of the Runway whose work directory is
// workDir.
func Leftovers(workDir, env string) []string { return demo.Leftovers(workDir, env) }

// TailLines returns the last lines of s.
func TailLines(s string, lines int) string { return demo.TailLines(s, lines) }
