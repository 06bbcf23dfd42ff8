package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/runway-cd/runway/internal/atomicfile"
)

// recordFile, in an environment's directory, lists its replicas so that a
// restarted control plane can adopt them instead of starting them again.
const recordFile = "replicas.json"

// replicaRecord is one replica in replicas.json. StartTime (field 22 of
// /proc/<pid>/stat) tells the replica apart from a later process that got
// the same pid.
type replicaRecord struct {
	App        string `json:"app"`
	Version    string `json:"version"`
	Index      int    `json:"index"`
	PID        int    `json:"pid"`
	StartTime  uint64 `json:"startTime"`
	Addr       string `json:"addr"`
	Log        string `json:"log"`
	HealthPath string `json:"healthPath"`
}

type recordContent struct {
	Replicas []replicaRecord `json:"replicas"`
}

// saveRecords replaces replicas.json with the environment's replica sets
// plus pending, a set being started; the caller holds e.mu.
func (e *environment) saveRecords(pending *replicaSet) error {
	sets := make([]*replicaSet, 0, len(e.sets)+1)
	for _, s := range e.sets {
		sets = append(sets, s)
	}
	if pending != nil {
		sets = append(sets, pending)
	}
	var c recordContent
	for _, s := range sets {
		for _, p := range s.procs {
			c.Replicas = append(c.Replicas, replicaRecord{
				App: s.app, Version: s.version, Index: p.index,
				PID: p.pid, StartTime: p.startTime,
				Addr: p.addr, Log: p.logPath, HealthPath: s.healthPath,
			})
		}
	}
	sort.Slice(c.Replicas, func(a, b int) bool {
		ra, rb := c.Replicas[a], c.Replicas[b]
		if ra.App != rb.App {
			return ra.App < rb.App
		}
		if ra.Version != rb.Version {
			return ra.Version < rb.Version
		}
		return ra.Index < rb.Index
	})
	if err := writeFileAtomic(filepath.Join(e.dir, recordFile), c); err != nil {
		return fmt.Errorf("recording replicas of %s: %w", e.name, err)
	}
	return nil
}

// writeFileAtomic writes v as JSON over path (0600), so a reader (or a
// crash) never sees half a file.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// readRecords reads the environment's replicas.json; a missing file means
// no replicas.
func readRecords(dir string) ([]replicaRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", recordFile, err)
	}
	var c recordContent
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", recordFile, err)
	}
	return c.Replicas, nil
}
