package server

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/analysis/prometheus"
)

// remoteProviders caches one HTTP provider per Prometheus server address;
// metricsPlane.providers checks the allow-list before asking it.
type remoteProviders struct {
	mu sync.Mutex
	m  map[string]analysis.Provider
}

func (r *remoteProviders) get(address string) (analysis.Provider, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.m[address]; ok {
		return p, nil
	}
	// Redirects are not followed: an allowed Prometheus server cannot send
	// Runway's queries on to an address that is not.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	p, err := prometheus.New(address, client)
	if err != nil {
		return nil, fmt.Errorf("prometheus provider %s: %w", address, err)
	}
	if r.m == nil {
		r.m = map[string]analysis.Provider{}
	}
	r.m[address] = p
	return p, nil
}
