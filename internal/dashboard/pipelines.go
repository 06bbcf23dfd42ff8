package dashboard

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/pipeline"
)

// phases are the pipeline phases the list filters by.
var phases = []pipeline.Phase{pipeline.Pending, pipeline.Queued, pipeline.Running, pipeline.Succeeded,
	pipeline.Failed, pipeline.Cancelled, pipeline.Superseded, pipeline.Skipped}

// pipelineRow is a pipeline as the list shows it.
type pipelineRow struct {
	*pipeline.Pipeline
	Current string // the running step, or the failed one, or the last done
}

type pipelinesData struct {
	Rows []pipelineRow
	// App and Status are the filter as applied; Apps and Phases the
	// choices.
	App, Status string
	Apps        []string
	Phases      []pipeline.Phase
	// Total is the number of pipelines before filtering.
	Total int
}

// listPipelines serves the pipeline list, filtered by ?app= and
// ?status= (a phase).
func (d *Dashboard) listPipelines(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	app, status := strings.TrimSpace(q.Get("app")), q.Get("status")
	if len(app) > maxParam {
		return errBadRequest
	}
	if status != "" && !slices.Contains(phases, pipeline.Phase(status)) {
		status = ""
	}
	ps, err := d.o.Pipelines.List(r.Context(), maxPipelines)
	if err != nil {
		return err
	}
	data := pipelinesData{App: app, Status: status, Phases: phases, Total: len(ps)}
	for _, p := range ps {
		if !slices.Contains(data.Apps, p.App) {
			data.Apps = append(data.Apps, p.App)
		}
		if app != "" && p.App != app || status != "" && string(p.Phase) != status {
			continue
		}
		data.Rows = append(data.Rows, pipelineRow{Pipeline: p, Current: currentStep(p)})
	}
	slices.Sort(data.Apps)
	lv := d.liveFor("Pipeline", "")
	if slices.ContainsFunc(ps, func(p *pipeline.Pipeline) bool { return !p.Phase.Done() }) {
		lv.Every = 5
	}
	d.render(w, r, http.StatusOK, "pipelines", page{Title: "Pipelines", Nav: "pipelines", Live: lv, Data: data})
	return nil
}

// currentStep is the step a pipeline is at: the running one, else the
// failed one, else the last that ran.
func currentStep(p *pipeline.Pipeline) string {
	last := ""
	for _, s := range p.Steps {
		switch {
		case s.Phase == pipeline.Running:
			return s.Name
		case s.Name == p.FailedStep && p.FailedStep != "":
			return s.Name
		case s.Phase != pipeline.Pending && s.Phase != "":
			last = s.Name
		}
	}
	return last
}

type pipelineData struct {
	P *pipeline.Pipeline
	// Failed is the failed step, its log's tail in FailedLog.
	Failed    *pipeline.Step
	FailedLog string
	// StagingUp is whether the staging environment still exists (as far
	// as the pipeline tells).
	StagingUp bool
	// CanCancel offers the cancel button.
	CanCancel bool
}

func (d *Dashboard) showPipeline(w http.ResponseWriter, r *http.Request) error {
	id, err := param(r, "id")
	if err != nil {
		return err
	}
	p, err := d.o.Pipelines.Get(r.Context(), id)
	if err != nil {
		return err
	}
	data := pipelineData{P: p}
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.Phase == pipeline.Failed && (p.FailedStep == "" || s.Name == p.FailedStep) && data.Failed == nil {
			data.Failed = s
			data.FailedLog = tail(s.Log, maxLogTail)
		}
	}
	data.StagingUp = p.StagingURL != "" && (!p.Phase.Done() || p.StagingKeptUntil.After(d.o.Now()))
	data.CanCancel = !p.Phase.Done() && canSteer(auth.CallerFrom(r.Context()))
	title := "Pipeline " + p.App + " " + shortSHA(p.Commit)
	lv := d.liveFor("Pipeline Environment", p.ID)
	if !p.Phase.Done() {
		lv.Every = 3
	}
	pg := page{Title: title, Nav: "pipelines", Live: lv, Data: data}
	pg.Flash, pg.FlashBad = flash(r.URL.Query())
	d.render(w, r, http.StatusOK, "pipeline", pg)
	return nil
}

// cancelPipeline serves the cancel button.
func (d *Dashboard) cancelPipeline(w http.ResponseWriter, r *http.Request) error {
	id, err := param(r, "id")
	if err != nil {
		return err
	}
	back := Prefix + "pipelines/" + url.PathEscape(id)
	if !canSteer(auth.CallerFrom(r.Context())) {
		http.Redirect(w, r, back+"?err=role", http.StatusSeeOther)
		return nil
	}
	reason := api.OneLine(r.PostFormValue("reason"), api.MaxReason)
	if reason == "" {
		reason = "cancelled from the dashboard"
	}
	if err := d.o.Pipelines.Cancel(r.Context(), id, reason); err != nil {
		d.log.Info("cancel from the dashboard failed", "pipeline", id, "err", err)
		http.Redirect(w, r, back+"?err="+errCode(err), http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, back+"?done=cancel", http.StatusSeeOther)
	return nil
}

// canSteer is whether c may press the buttons: an admin session (a
// bearer token cannot post a form: auth.Protect wants JSON of it).
func canSteer(c auth.Caller) bool { return c.Session && c.Role == auth.Admin }
