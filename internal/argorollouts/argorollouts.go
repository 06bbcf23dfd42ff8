// Package argorollouts drives production on Kubernetes through Argo
// Rollouts: each production app is a Rollout carrying the app spec's
// canary steps and its AnalysisTemplates; Argo's controller runs the
// canary, and this package follows the Rollout's status into Runway's
// rollout status, API and reporter, maps promote/abort/retry to Argo's own
// operations, and reverts the production manifest in git on abort. It
// takes the environment controller's desired versions as the local
// rollout controller does (rollout.Desired) and answers the API's
// questions in the same types (rollout.Status).
//
// CONTRACT SKELETON written by the lead; the owner replaces the bodies.
package argorollouts

import (
	"context"
	"errors"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// Templates makes the pod template of a replica set (the Kubernetes
// runtime's PodTemplate: image built and pushed, environment, probes).
type Templates interface {
	PodTemplate(ctx context.Context, rs runtime.ReplicaSet) (corev1.PodTemplateSpec, error)
	Namespace(env string) string
}

// ReplicaSets makes the replica set of an artifact in an environment
// (workload.Starter.ReplicaSet: command, probes, database settings).
type ReplicaSets interface {
	ReplicaSet(ctx context.Context, env string, art build.Artifact, healthTimeout time.Duration) (runtime.ReplicaSet, error)
}

// Options configure a Controller. Config, Templates, ReplicaSets, Repo
// and Reporter are required.
type Options struct {
	Config      *rest.Config
	Templates   Templates
	ReplicaSets ReplicaSets
	// Artifacts, if set, find a stable version's artifact (to read its
	// spec) after a restart.
	Artifacts rollout.Artifacts
	// PrometheusAddress is written into every AnalysisTemplate's
	// prometheus.address: the cluster's Prometheus.
	PrometheusAddress string
	Repo              rollout.Repo
	Reporter          rollout.Reporter
	Events            *events.Recorder
	Clock             clock.Clock
	Logger            *slog.Logger
	Redact            func(string) string
	// Committed, if set, is called after a revert commit was pushed.
	Committed func()
}

// Controller runs production rollouts on Argo Rollouts.
type Controller struct{}

// New returns a Controller; Run starts it.
func New(o Options) (*Controller, error) {
	return nil, errors.New("argorollouts: not implemented yet")
}

// Run watches the Rollouts and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return errors.New("argorollouts: not implemented yet")
}

// The environment controller's side (environment.Rollouts).
func (c *Controller) SetDesired(d rollout.Desired)                  {}
func (c *Controller) Forget(env, app string)                        {}
func (c *Controller) Wanted(env, app string) ([]string, bool)       { return nil, false }
func (c *Controller) Stable(env, app string) string                 { return "" }
func (c *Controller) AbortVersion(env, app, version, reason string) {}

// The API's side (api.Rollouts).
func (c *Controller) List() []rollout.Status              { return nil }
func (c *Controller) Promote(env, app string) error       { return errors.New("not implemented") }
func (c *Controller) PromoteFull(env, app string) error   { return errors.New("not implemented") }
func (c *Controller) Abort(env, app, reason string) error { return errors.New("not implemented") }
func (c *Controller) Retry(env, app string) error         { return errors.New("not implemented") }
