package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/runway-cd/runway/internal/atomicfile"
)

// SaveRoutes writes the route table to path as a JSON array of Route, in the
// order of Routes. The write is atomic: the table goes to a temporary file in
// the same directory, which is synced and then renamed over path, so a crash
// leaves either the old file or the new one, never a torn one.
func (g *Gateway) SaveRoutes(path string) error {
	data, err := json.MarshalIndent(g.Routes(), "", "  ")
	if err != nil {
		return fmt.Errorf("encoding routes: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("saving routes to %s: %w", path, err)
	}
	return nil
}

// LoadRoutes replaces the route table with the routes saved in path by
// SaveRoutes, in one step. A missing file means no routes. A file that is
// not a valid route table is an error and leaves the table unchanged. Saved
// routes that the backend policy forbids are left out and logged.
func (g *Gateway) LoadRoutes(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		g.update(func(t table) { clear(t) })
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading routes: %w", err)
	}
	routes, err := decodeRoutes(data)
	if err != nil {
		return fmt.Errorf("loading routes from %s: %w", path, err)
	}
	g.update(func(t table) {
		clear(t)
		for _, r := range routes {
			if err := g.policy.Load().checkRoute(r); err != nil {
				// Saved under a wider policy: serving it would break the
				// one now configured, and failing would take every route
				// down. The control plane sets it again if it still may.
				g.log.Warn("not loading saved route the backend policy forbids", "env", r.Env, "app", r.App, "err", err)
				continue
			}
			if err := g.bindDirect(&r); err != nil {
				// The saved port is taken: a new one beats no route.
				g.log.Warn("saved direct listener address unavailable; choosing another", "env", r.Env, "app", r.App,
					"listen", r.Listen, "err", err)
				r.Listen = ""
				if err := g.bindDirect(&r); err != nil {
					g.log.Error("no direct listener for saved route", "env", r.Env, "app", r.App, "err", err)
				}
			}
			t[routeKey{r.Env, r.App}] = g.newEntry(r)
		}
	})
	return nil
}

// decodeRoutes parses and validates a saved route table.
func decodeRoutes(data []byte) ([]Route, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var routes []Route
	if err := dec.Decode(&routes); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding: data after the route table")
	}
	if routes == nil {
		return nil, errors.New("decoding: want a JSON array of routes, got null")
	}
	seen := make(map[routeKey]bool, len(routes))
	for i, r := range routes {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("route %d (%s/%s): %w", i, r.Env, r.App, err)
		}
		k := routeKey{r.Env, r.App}
		if seen[k] {
			return nil, fmt.Errorf("route %d: %s/%s appears twice", i, r.Env, r.App)
		}
		seen[k] = true
		routes[i] = r.clone()
	}
	return routes, nil
}
