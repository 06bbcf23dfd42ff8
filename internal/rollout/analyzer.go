package rollout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/runway-cd/runway/internal/analysis"
)

var _ Analyzer = (*TemplateAnalyzer)(nil)

// TemplateAnalyzer runs AnalysisTemplates shipped in the canary's artifact
// (the files listed in its app spec's analysisTemplates).
type TemplateAnalyzer struct {
	Providers analysis.ProviderFor
	// Observer, if set, is told of every measurement.
	Observer analysis.Observer
}

// Analyze implements Analyzer.
func (a *TemplateAnalyzer) Analyze(ctx context.Context, req AnalysisRequest) (Outcome, error) {
	byName := map[string]*analysis.Template{}
	for _, f := range req.Artifact.Spec.AnalysisTemplates {
		data, err := os.ReadFile(filepath.Join(req.Artifact.Dir, filepath.FromSlash(f)))
		if err != nil {
			return Outcome{}, fmt.Errorf("reading analysis template file %s: %w", f, err)
		}
		ts, err := analysis.ParseTemplates(data)
		if err != nil {
			return Outcome{}, fmt.Errorf("analysis template file %s: %w", f, err)
		}
		for _, t := range ts {
			byName[t.Metadata.Name] = t
		}
	}
	var templates []*analysis.Template
	for _, ref := range req.Templates {
		t, ok := byName[ref.TemplateName]
		if !ok {
			return Outcome{}, fmt.Errorf("analysis template %q is not in the app's analysisTemplates files", ref.TemplateName)
		}
		templates = append(templates, t)
	}
	run, err := analysis.NewRun(req.Name, templates, req.Args)
	if err != nil {
		return Outcome{}, fmt.Errorf("preparing analysis %s: %w", req.Name, err)
	}
	obs := a.Observer
	if obs == nil {
		obs = noObserver{}
	}
	res, err := run.Execute(ctx, a.Providers, obs, nil)
	if err != nil {
		return Outcome{}, fmt.Errorf("analysis %s: %w", req.Name, err)
	}
	return Outcome{Phase: string(res.Phase), Reason: res.Reason}, nil
}

type noObserver struct{}

func (noObserver) Measured(context.Context, string, analysis.Measurement) {}
