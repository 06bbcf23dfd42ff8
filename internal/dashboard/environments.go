package dashboard

import (
	"net/http"
	"time"

	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
)

// envView is an environment as the page shows it: its status, and for a
// staging environment the pipeline it belongs to (where its age and its
// TTL come from).
type envView struct {
	environment.EnvStatus
	Production bool
	Pipeline   *pipeline.Pipeline
	Since      time.Time // when its pipeline started
	KeptUntil  time.Time // a kept staging environment's end
}

func (d *Dashboard) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	ps, err := d.o.Pipelines.List(r.Context(), maxPipelines)
	if err != nil {
		return err
	}
	byEnv := map[string]*pipeline.Pipeline{}
	for _, p := range ps { // newest first: keep the newest of an env
		if p.StagingEnv != "" && byEnv[p.StagingEnv] == nil {
			byEnv[p.StagingEnv] = p
		}
	}
	var views []envView
	for _, es := range d.o.Environments.Status() {
		v := envView{EnvStatus: es, Production: es.Name == manifest.ProductionEnv}
		if p := byEnv[es.Name]; p != nil {
			v.Pipeline, v.Since, v.KeptUntil = p, p.Started, p.StagingKeptUntil
			if v.Since.IsZero() {
				v.Since = p.Created
			}
		}
		if v.Production {
			views = append([]envView{v}, views...)
		} else {
			views = append(views, v)
		}
	}
	d.render(w, r, http.StatusOK, "environments", page{Title: "Environments", Nav: "environments",
		Live: d.liveFor("Environment Rollout", ""), Data: views})
	return nil
}
