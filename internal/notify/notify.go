// Package notify sends outbound notifications of what Runway did: a
// pipeline ended, a rollout paused, was aborted or was promoted. (Skeleton:
// the lead wires it; the notify helper fills it in.)
package notify

import (
	"context"
	"log/slog"

	"github.com/runway-cd/runway/internal/api"
)

// Config is the server config's notifications block.
type Config struct {
	Receivers []Receiver `json:"receivers,omitempty"`
}

// Receiver is one destination.
type Receiver struct {
	Name string `json:"name"`
}

// Validate reports what is wrong with c, naming each field by its path
// under notifications.
func (c Config) Validate() []error { return nil }

// Options are what the notifier reads.
type Options struct {
	Config    Config
	Events    api.Events
	Pipelines api.Pipelines
	Redact    func(string) string
	Logger    *slog.Logger
}

// Notifier follows the event log and sends notifications.
type Notifier struct{ o Options }

// New returns a notifier.
func New(o Options) (*Notifier, error) { return &Notifier{o: o}, nil }

// Run sends notifications until ctx ends.
func (n *Notifier) Run(ctx context.Context) { <-ctx.Done() }
