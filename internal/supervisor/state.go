package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/atomicfile"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

type stateFile struct {
	Version   int           `json:"version"`
	Workloads []stateRecord `json:"workloads"`
}

// stateRecord is one workload in the state file.
type stateRecord struct {
	Spec      Spec   `json:"spec"`
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	Restarts  int    `json:"restarts,omitempty"`
	// Crashes is the position in the backoff schedule, so that a crash
	// loop keeps backing off across a supervisor's restart.
	Crashes    int       `json:"crashes,omitempty"`
	Started    bool      `json:"started,omitempty"`
	LastExit   string    `json:"lastExit,omitempty"`
	LastExitAt time.Time `json:"lastExitAt,omitzero"`
	// Removing marks a workload Remove began to stop: a supervisor killed
	// before it forgot the workload finishes the removal at its next
	// start instead of restarting it.
	Removing bool `json:"removing,omitempty"`
	// Run is the nonce of the last process started (RunEnv), recorded
	// before it started.
	Run string `json:"run,omitempty"`
}

// persist writes every workload to the state file.
func (s *Supervisor) persist() error {
	if s.state == "" {
		return nil
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.Lock()
	f := stateFile{Version: stateVersion, Workloads: make([]stateRecord, 0, len(s.work))}
	for _, w := range s.work {
		r := stateRecord{Spec: w.spec, Restarts: w.restarts, Crashes: w.crashes, Started: w.started, LastExit: w.lastExit, LastExitAt: w.lastExitAt, Removing: w.removing, Run: w.run}
		if w.proc != nil {
			r.PID, r.StartTime = w.proc.pid, w.proc.start
		}
		f.Workloads = append(f.Workloads, r)
	}
	s.mu.Unlock()
	sort.Slice(f.Workloads, func(i, j int) bool { return f.Workloads[i].Spec.ID < f.Workloads[j].Spec.ID })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding supervisor state: %w", err)
	}
	if err := atomicfile.Write(s.state, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing supervisor state: %w", err)
	}
	return nil
}

// readState reads the state file at path; an absent file holds nothing.
func readState(path string) (stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("reading supervisor state: %w", err)
	}
	f, err := parseState(b)
	if err != nil {
		return stateFile{}, fmt.Errorf("reading supervisor state %s (move it away to start without its workloads): %w", path, err)
	}
	return f, nil
}

// parseState parses and checks a state file's content.
func parseState(b []byte) (stateFile, error) {
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return stateFile{}, fmt.Errorf("parsing: %w", err)
	}
	if dec.More() {
		return stateFile{}, errors.New("parsing: data after the state")
	}
	if f.Version != stateVersion {
		return stateFile{}, fmt.Errorf("version %d, want %d", f.Version, stateVersion)
	}
	seen := map[string]bool{}
	for _, r := range f.Workloads {
		if err := Validate(r.Spec); err != nil {
			return stateFile{}, fmt.Errorf("workload %q: %w", r.Spec.ID, err)
		}
		if seen[r.Spec.ID] {
			return stateFile{}, fmt.Errorf("workload %q recorded twice", r.Spec.ID)
		}
		seen[r.Spec.ID] = true
		if r.PID < 0 || r.Restarts < 0 || r.Crashes < 0 {
			return stateFile{}, fmt.Errorf("workload %q: negative pid or count", r.Spec.ID)
		}
	}
	return f, nil
}

// load takes over the workloads of the state file: adopts each recorded
// process that still runs as recorded and restarts the others.
func (s *Supervisor) load(ctx context.Context) error {
	if s.state == "" {
		return nil
	}
	f, err := readState(s.state)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	type pending struct {
		w *workload
		p *proc
	}
	var todo []pending
	s.mu.Lock()
	for _, r := range f.Workloads {
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("loading supervisor state: %w", err)
		}
		if r.Removing {
			// A Remove a killed supervisor did not finish: finished now.
			// The drain was interrupted anyway; what still runs of it is
			// killed, once its start time proves it is the workload's.
			if r.PID > 0 && !gone(r.PID, r.StartTime) {
				p := &proc{pid: r.PID, start: r.StartTime}
				if err := p.signalGroup(syscall.SIGKILL); err != nil {
					s.log.Warn("finishing an interrupted removal", "id", r.Spec.ID, "pid", r.PID, "err", err)
				}
			}
			s.log.Info("finished removing a workload whose removal was interrupted", "id", r.Spec.ID, "pid", r.PID)
			continue
		}
		w := newWorkload(r.Spec, now)
		w.restarts, w.crashes, w.started, w.run = r.Restarts, r.Crashes, r.Started, r.Run
		if r.Run != "" && (r.PID <= 0 || gone(r.PID, r.StartTime)) {
			// Started but not recorded (the last supervisor was killed in
			// between), or restarted so: the process of the recorded run,
			// if it runs, is the workload's.
			if pid, start := findRun(r.Run); pid > 0 {
				s.log.Info("found the process of a start that was never recorded", "id", r.Spec.ID, "pid", pid)
				r.PID, r.StartTime = pid, start
			}
		}
		w.lastExit, w.lastExitAt = r.LastExit, r.LastExitAt
		var p *proc
		switch {
		case r.PID > 0 && !gone(r.PID, r.StartTime): // running, or still exiting: watched until gone
			p = adoptProc(r.PID, r.StartTime, now, s.closing, &s.bg)
			w.started = true
			s.adopted(w, p)
			s.log.Info("adopted workload", "id", r.Spec.ID, "pid", r.PID)
		case r.PID > 0:
			// Gone, or its pid now belongs to another process: never signalled.
			w.lastExit, w.lastExitAt = "exited while no supervisor watched", now
			s.log.Warn("recorded workload process is gone; restarting it", "id", r.Spec.ID, "pid", r.PID)
		}
		s.work[r.Spec.ID] = w
		todo = append(todo, pending{w, p})
	}
	s.mu.Unlock()
	// The gateway loaded its routes with every backend ready; none is
	// until a probe of this supervisor says so (its process may have died,
	// and another user's taken its port, while no supervisor watched).
	if s.onReady != nil {
		for _, t := range todo {
			if t.w.spec.Addr != "" && t.w.spec.Readiness != nil {
				s.onReady(t.w.spec.Addr, false)
			}
		}
	}
	for _, t := range todo {
		if t.p != nil && t.w.spec.Readiness == nil {
			s.setReady(t.w, t.p, true)
		}
		s.launch(t.w, t.p) // New has not returned: no Close can be waiting
	}
	if err := s.persist(); err != nil {
		s.log.Error("recording adopted workloads", "err", err)
	}
	return nil
}
