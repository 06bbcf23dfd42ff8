package gatewayproc

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/runway-cd/runway/internal/atomicfile"
)

// Record is what RecordPath holds about the running gateway: enough to find
// it again after the control plane restarts, and to tell it from an
// unrelated process that got the same PID.
type Record struct {
	PID int `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat: clock ticks after boot.
	StartTime uint64 `json:"startTime"`
	// Listen is the gateway's traffic address.
	Listen string `json:"listen"`
	// Admin is the path of its admin unix socket.
	Admin string `json:"admin"`
	// Metrics is the loopback address of its metrics listener.
	Metrics string `json:"metrics"`
	// Supervise is the supervisor's state file the process was started
	// with; empty for a gateway without a supervisor.
	Supervise string `json:"supervise,omitempty"`
}

// readRecord reads the record at path.
func readRecord(path string) (*Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading gateway record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding gateway record %s: %w", path, err)
	}
	return &r, nil
}

// writeRecord replaces the record at path atomically, so a crash leaves
// the old record or the new one.
func writeRecord(path string, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding gateway record: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing gateway record: %w", err)
	}
	return nil
}
