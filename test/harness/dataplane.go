package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/runway-cd/runway/internal/gatewayproc"
	"github.com/runway-cd/runway/internal/procfs"
)

// DataDir is the data directory of the harness's Runway.
func (h *Harness) DataDir() string { return h.cfg.DataDir }

// gatewayDir is where the server keeps the gateway process's record,
// routes and log under the data directory.
func gatewayDir(dataDir string) string { return filepath.Join(dataDir, "gateway") }

// GatewayRecord reads the record the control plane keeps of the gateway
// process it supervises: its PID, start time and addresses.
func (h *Harness) GatewayRecord() (gatewayproc.Record, error) {
	path := filepath.Join(gatewayDir(h.cfg.DataDir), "gateway.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return gatewayproc.Record{}, fmt.Errorf("reading gateway record: %w", err)
	}
	var r gatewayproc.Record
	if err := json.Unmarshal(b, &r); err != nil {
		return gatewayproc.Record{}, fmt.Errorf("decoding gateway record %s: %w", path, err)
	}
	return r, nil
}

// KillGateway sends SIGKILL to the recorded gateway process, after checking
// that the PID still belongs to the process that was recorded (same start
// time), and returns the record of the process it killed.
func (h *Harness) KillGateway() (gatewayproc.Record, error) {
	r, err := h.GatewayRecord()
	if err != nil {
		return r, err
	}
	if !procfs.Running(r.PID, r.StartTime) {
		return r, fmt.Errorf("killing gateway: recorded process %d is not running", r.PID)
	}
	if err := procfs.Signal(r.PID, r.StartTime, syscall.SIGKILL); err != nil {
		return r, fmt.Errorf("killing gateway: %w", err)
	}
	return r, nil
}

// GatewayProcesses lists the PIDs of the live gateway processes of the
// Runway whose data directory is dataDir: those whose command line names
// that data directory's gateway state file. Exited processes not yet
// reaped are not listed.
func GatewayProcesses(dataDir string) []int {
	state := []byte("\x00" + filepath.Join(gatewayDir(dataDir), "routes.json") + "\x00")
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if !bytes.Contains(cmdline, state) {
			continue
		}
		if st, err := procfs.Read(pid); err != nil || st.Exited() {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// WorkDir is the work directory of the harness's Runway: its artifacts,
// builds and environments.
func (h *Harness) WorkDir() string {
	if h.cfg.WorkDir != "" {
		return h.cfg.WorkDir
	}
	return filepath.Clean(h.cfg.DataDir) + "-work"
}
