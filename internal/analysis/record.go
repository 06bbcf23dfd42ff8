package analysis

import (
	"context"
	"slices"
	"sync"
	"time"
)

// RunRecord is what is kept of an analysis run: its verdict and every
// measurement, readable after the run (and a retry) ended.
type RunRecord struct {
	Name       string         `json:"name"`
	Env        string         `json:"env"`
	App        string         `json:"app"`
	Version    string         `json:"version"`
	Templates  []string       `json:"templates"`
	Phase      Phase          `json:"phase"`
	Reason     string         `json:"reason,omitempty"`
	StartedAt  time.Time      `json:"startedAt"`
	FinishedAt time.Time      `json:"finishedAt,omitzero"`
	Metrics    []MetricResult `json:"metrics"`
}

// Recorder builds a RunRecord from the measurements of a running run. It
// is an Observer; save is called with a copy after every change.
type Recorder struct {
	mu   sync.Mutex
	rec  RunRecord
	save func(RunRecord)
}

var _ Observer = (*Recorder)(nil)

// NewRecorder starts a record in phase Running.
func NewRecorder(rec RunRecord, save func(RunRecord)) *Recorder {
	rec.Phase = PhaseRunning
	r := &Recorder{rec: rec, save: save}
	r.saveLocked()
	return r
}

// Describe records what each metric of the run measures and how it is
// judged (its resolved query and conditions), before any measurement, so
// that a run under way shows them too.
func (r *Recorder) Describe(metrics []Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range metrics {
		i := slices.IndexFunc(r.rec.Metrics, func(x MetricResult) bool { return x.Name == m.Name })
		if i < 0 {
			r.rec.Metrics = append(r.rec.Metrics, MetricResult{Name: m.Name, Phase: PhaseRunning})
			i = len(r.rec.Metrics) - 1
		}
		mr := &r.rec.Metrics[i]
		mr.Query, mr.SuccessCondition, mr.FailureCondition = m.Query, m.SuccessCondition, m.FailureCondition
	}
	r.saveLocked()
}

// Measured implements Observer.
func (r *Recorder) Measured(_ context.Context, metric string, m Measurement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.rec.Metrics, func(x MetricResult) bool { return x.Name == metric })
	if i < 0 {
		r.rec.Metrics = append(r.rec.Metrics, MetricResult{Name: metric, Phase: PhaseRunning})
		i = len(r.rec.Metrics) - 1
	}
	r.rec.Metrics[i].Measurements = append(r.rec.Metrics[i].Measurements, m)
	r.saveLocked()
}

// Finish records the run's result.
func (r *Recorder) Finish(res Result, finished time.Time) RunRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Phase, r.rec.Reason, r.rec.FinishedAt = res.Phase, res.Reason, finished
	if len(res.Metrics) > 0 {
		r.rec.Metrics = res.Metrics
	}
	r.saveLocked()
	return r.copyLocked()
}

// Fail records a run that could not run at all.
func (r *Recorder) Fail(reason string, finished time.Time) RunRecord {
	return r.Finish(Result{Phase: PhaseError, Reason: reason}, finished)
}

func (r *Recorder) copyLocked() RunRecord {
	c := r.rec
	c.Metrics = make([]MetricResult, len(r.rec.Metrics))
	for i, m := range r.rec.Metrics {
		m.Measurements = slices.Clone(m.Measurements)
		c.Metrics[i] = m
	}
	return c
}

func (r *Recorder) saveLocked() {
	if r.save != nil {
		r.save(r.copyLocked())
	}
}
