package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
)

var _ Analyzer = (*TemplateAnalyzer)(nil)

// RunStore keeps analysis runs and their measurements.
type RunStore interface {
	SaveAnalysisRun(ctx context.Context, r analysis.RunRecord) error
	GetAnalysisRun(ctx context.Context, name string) (analysis.RunRecord, error)
}

// TemplateAnalyzer runs AnalysisTemplates shipped in the canary's artifact
// (the files listed in its app spec's analysisTemplates) and records every
// run with its measurements.
type TemplateAnalyzer struct {
	Providers analysis.ProviderFor
	// Runs, if set, receives the run's record after every measurement.
	Runs   RunStore
	Logger *slog.Logger
}

// Analyze implements Analyzer.
func (a *TemplateAnalyzer) Analyze(ctx context.Context, req AnalysisRequest) (Outcome, error) {
	names := make([]string, len(req.Templates))
	for i, t := range req.Templates {
		names[i] = t.TemplateName
	}
	start := analysis.RunRecord{
		Name: req.Name, Env: req.Args["env"], App: req.Args["app"], Version: req.Args["version"],
		Templates: names, StartedAt: time.Now().UTC(),
	}
	var previous map[string][]analysis.Measurement
	if req.Resume {
		prev, ok := a.previous(ctx, req.Name)
		if ok && prev.Phase != analysis.PhaseRunning {
			// It ended before the restart: its verdict stands.
			return Outcome{Phase: string(prev.Phase), Reason: prev.Reason}, nil
		}
		if ok {
			start = prev
			previous = map[string][]analysis.Measurement{}
			for _, m := range prev.Metrics {
				previous[m.Name] = m.Measurements
			}
		}
	}
	rec := analysis.NewRecorder(start, func(r analysis.RunRecord) { a.save(ctx, r) })
	run, err := a.prepare(req)
	if err != nil {
		rec.Fail(err.Error(), time.Now().UTC())
		return Outcome{}, err
	}
	rec.Describe(run.Metrics)
	if previous != nil {
		// initialDelay and the interval count from the first start.
		run.StartedAt = start.StartedAt
	}
	res, err := run.Execute(ctx, a.Providers, rec, previous)
	if err != nil {
		// A shutdown leaves the record Running (the run is not over); an
		// abort or a failing background analysis ends it, with the cause.
		if cause := context.Cause(ctx); cause == nil || !errors.Is(cause, context.Canceled) {
			reason := err.Error()
			if cause != nil {
				reason = "stopped before it ended: " + cause.Error()
			}
			rec.Fail(reason, time.Now().UTC())
		}
		return Outcome{}, fmt.Errorf("analysis %s: %w", req.Name, err)
	}
	rec.Finish(res, time.Now().UTC())
	return Outcome{Phase: string(res.Phase), Reason: res.Reason}, nil
}

// previous loads the stored record of a run a restart interrupted.
func (a *TemplateAnalyzer) previous(ctx context.Context, name string) (analysis.RunRecord, bool) {
	if a.Runs == nil {
		return analysis.RunRecord{}, false
	}
	rec, err := a.Runs.GetAnalysisRun(ctx, name)
	if err != nil {
		a.logger().Warn("resuming analysis run: no stored record, it starts afresh", "run", name, "err", err)
		return analysis.RunRecord{}, false
	}
	return rec, true
}

func (a *TemplateAnalyzer) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.Default()
	}
	return a.Logger
}

func (a *TemplateAnalyzer) save(ctx context.Context, r analysis.RunRecord) {
	if a.Runs == nil {
		return
	}
	if err := a.Runs.SaveAnalysisRun(context.WithoutCancel(ctx), r); err != nil {
		a.logger().Error("saving analysis run", "run", r.Name, "err", err)
	}
}

// prepare loads the templates the request names and resolves their args.
func (a *TemplateAnalyzer) prepare(req AnalysisRequest) (*analysis.Run, error) {
	byName := map[string]*analysis.Template{}
	for _, f := range req.Artifact.Spec.AnalysisTemplates {
		data, err := os.ReadFile(filepath.Join(req.Artifact.Dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("reading analysis template file %s: %w", f, err)
		}
		ts, err := analysis.ParseTemplates(data)
		if err != nil {
			return nil, fmt.Errorf("analysis template file %s: %w", f, err)
		}
		for _, t := range ts {
			byName[t.Metadata.Name] = t
		}
	}
	var templates []*analysis.Template
	for _, ref := range req.Templates {
		t, ok := byName[ref.TemplateName]
		if !ok {
			return nil, fmt.Errorf("analysis template %q is not in the app's analysisTemplates files", ref.TemplateName)
		}
		templates = append(templates, t)
	}
	run, err := analysis.NewRun(req.Name, templates, req.Args)
	if err != nil {
		return nil, fmt.Errorf("preparing analysis %s: %w", req.Name, err)
	}
	return run, nil
}
