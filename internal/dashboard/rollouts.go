package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/rollout"
)

// runView is an analysis run as the rollout page shows it. It is read
// from the run's JSON, so fields the record gains (a metric's resolved
// query and conditions: "query", "successCondition", "failureCondition")
// show as soon as the analysis package records them.
type runView struct {
	Name       string       `json:"name"`
	Phase      string       `json:"phase"`
	Reason     string       `json:"reason"`
	Version    string       `json:"version"`
	Templates  []string     `json:"templates"`
	StartedAt  time.Time    `json:"startedAt"`
	FinishedAt time.Time    `json:"finishedAt"`
	Metrics    []metricView `json:"metrics"`
}

type metricView struct {
	Name             string            `json:"name"`
	Phase            string            `json:"phase"`
	Reason           string            `json:"reason"`
	Query            string            `json:"query"`
	SuccessCondition string            `json:"successCondition"`
	FailureCondition string            `json:"failureCondition"`
	Measurements     []measurementView `json:"measurements"`
	// Chart is drawn by the page.
	Chart chart `json:"-"`
	// Success and Failure are whether the conditions were drawn.
	SuccessDrawn, FailureDrawn bool `json:"-"`
}

type measurementView struct {
	Phase      string    `json:"phase"`
	Value      string    `json:"value"`
	Reason     string    `json:"reason"`
	Query      string    `json:"query"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	NotCounted bool      `json:"notCounted"`
}

func toRunView(rec analysis.RunRecord) (runView, error) {
	var v runView
	b, err := json.Marshal(rec)
	if err != nil {
		return v, fmt.Errorf("encoding analysis run %s: %w", rec.Name, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decoding analysis run %s: %w", rec.Name, err)
	}
	return v, nil
}

func (d *Dashboard) listRollouts(w http.ResponseWriter, r *http.Request) error {
	sts := d.o.Rollouts.List()
	d.history.sample(sts, d.o.Now())
	d.render(w, r, http.StatusOK, "rollouts", page{Title: "Rollouts", Nav: "rollouts", Live: d.liveFor("Rollout", ""), Data: sts})
	return nil
}

type rolloutData struct {
	Env, App string
	// Status is the rollout in progress, nil when none is.
	Status  *rollout.Status
	Traffic chart
	Runs    []runView
	// CanSteer shows the buttons; Paused whether promote and retry apply.
	CanSteer bool
	Paused   bool
}

// maxRunsShown bounds the analysis runs on a rollout page.
const maxRunsShown = 3

func (d *Dashboard) showRollout(w http.ResponseWriter, r *http.Request) error {
	env, err := param(r, "env")
	if err != nil {
		return err
	}
	app, err := param(r, "app")
	if err != nil {
		return err
	}
	sts := d.o.Rollouts.List()
	now := d.o.Now()
	d.history.sample(sts, now)
	data := rolloutData{Env: env, App: app, CanSteer: canSteer(auth.CallerFrom(r.Context()))}
	for i := range sts {
		if sts[i].Env == env && sts[i].App == app {
			data.Status = &sts[i]
		}
	}
	pts, seen := d.history.get(env, app)
	if data.Status == nil && len(pts) == 0 {
		return errNotFound
	}
	end := now
	if data.Status == nil {
		end = seen
	}
	data.Traffic = trafficChart("traffic", pts, end)
	if data.Status != nil {
		data.Paused = data.Status.Phase == rollout.Paused
	}
	if data.Runs, err = d.runsOf(r.Context(), env, app, data.Status); err != nil {
		return err
	}
	lv := d.liveFor("Rollout", env+"/"+app)
	if data.Status != nil {
		lv.Every = 5
	}
	pg := page{Title: "Rollout " + app + " in " + env, Nav: "rollouts", Live: lv, Data: data}
	pg.Flash, pg.FlashBad = flash(r.URL.Query())
	d.render(w, r, http.StatusOK, "rollout", pg)
	return nil
}

// runsOf returns the newest analysis runs of env/app (those the rollout
// names first), newest first, with their charts.
func (d *Dashboard) runsOf(ctx context.Context, env, app string, st *rollout.Status) ([]runView, error) {
	if d.o.Runs == nil {
		return nil, nil
	}
	recs, err := d.o.Runs.ListAnalysisRuns(ctx, maxRuns)
	if err != nil {
		return nil, fmt.Errorf("listing analysis runs: %w", err)
	}
	var named []string
	if st != nil {
		for _, a := range st.Analyses {
			named = append(named, a.Name)
		}
	}
	var mine []analysis.RunRecord
	for _, rec := range recs {
		if rec.Env == env && rec.App == app || slices.Contains(named, rec.Name) {
			mine = append(mine, rec)
		}
	}
	slices.SortStableFunc(mine, func(a, b analysis.RunRecord) int { return b.StartedAt.Compare(a.StartedAt) })
	if len(mine) > maxRunsShown {
		mine = mine[:maxRunsShown]
	}
	var out []runView
	for i, rec := range mine {
		v, err := toRunView(rec)
		if err != nil {
			return nil, err
		}
		for j := range v.Metrics {
			m := &v.Metrics[j]
			m.Chart = metricChart(fmt.Sprintf("run%d-metric%d", i, j), *m)
			_, m.SuccessDrawn = parseThreshold(m.SuccessCondition)
			_, m.FailureDrawn = parseThreshold(m.FailureCondition)
		}
		out = append(out, v)
	}
	return out, nil
}

// steerRollout serves the promote, full-promote, abort and retry
// buttons.
func (d *Dashboard) steerRollout(w http.ResponseWriter, r *http.Request) error {
	env, err := param(r, "env")
	if err != nil {
		return err
	}
	app, err := param(r, "app")
	if err != nil {
		return err
	}
	back := Prefix + "rollouts/" + url.PathEscape(env) + "/" + url.PathEscape(app)
	if !canSteer(auth.CallerFrom(r.Context())) {
		http.Redirect(w, r, back+"?err=role", http.StatusSeeOther)
		return nil
	}
	action := r.PathValue("action")
	switch action {
	case "promote":
		err = d.o.Rollouts.Promote(env, app)
	case "full":
		err = d.o.Rollouts.PromoteFull(env, app)
	case "abort":
		reason := api.OneLine(r.PostFormValue("reason"), api.MaxReason)
		if reason == "" {
			reason = "aborted from the dashboard"
		}
		err = d.o.Rollouts.Abort(env, app, reason)
	case "retry":
		err = d.o.Rollouts.Retry(env, app)
	default:
		return errNotFound
	}
	if err != nil {
		d.log.Info("rollout action from the dashboard failed", "env", env, "app", app, "action", action, "err", err)
		http.Redirect(w, r, back+"?err="+errCode(err), http.StatusSeeOther)
		return nil
	}
	d.history.sample(d.o.Rollouts.List(), d.o.Now())
	http.Redirect(w, r, back+"?done="+action, http.StatusSeeOther)
	return nil
}
