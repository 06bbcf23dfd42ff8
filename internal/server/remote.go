package server

import (
	"fmt"

	"github.com/runway-cd/runway/internal/analysis"
)

// newRemoteProvider queries a Prometheus server's HTTP API.
func newRemoteProvider(address string) (analysis.Provider, error) {
	return nil, fmt.Errorf("prometheus address %q: querying a Prometheus server is not wired yet", address)
}
