package postgres

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// recordFile, in the instance dir, says which process serves the instance,
// so a later Runway can adopt a server that outlived it.
const recordFile = "instance.json"

// record is the content of instance.json. StartTime (field 22 of
// /proc/<pid>/stat) tells the server apart from a later process that got
// the same pid.
type record struct {
	PID       int    `json:"pid"`
	Port      int    `json:"port"`
	SocketDir string `json:"socketDir"`
	StartTime uint64 `json:"startTime"`
}

// writeRecord replaces instance.json atomically.
func (i *Instance) writeRecord() error {
	b, err := json.MarshalIndent(record{PID: i.pid, Port: i.port, SocketDir: i.sockDir, StartTime: i.startedAt}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", recordFile, err)
	}
	path := filepath.Join(i.dir, recordFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", recordFile, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", recordFile, err)
	}
	return nil
}

// readRecord reads dir/instance.json.
func readRecord(dir string) (record, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return rec, fmt.Errorf("reading %s: %w", recordFile, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decoding %s: %w", recordFile, err)
	}
	return rec, nil
}
