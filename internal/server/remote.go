package server

import (
	"fmt"
	"sync"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/analysis/prometheus"
)

// remoteProviders caches one HTTP provider per Prometheus server address.
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
	p, err := prometheus.New(address, nil)
	if err != nil {
		return nil, fmt.Errorf("prometheus provider %s: %w", address, err)
	}
	if r.m == nil {
		r.m = map[string]analysis.Provider{}
	}
	r.m[address] = p
	return p, nil
}
