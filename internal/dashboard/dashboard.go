// Package dashboard is Runway's web dashboard, served by runway serve
// under /ui/ behind the API's authentication (auth.Protect, with browser
// sessions). Its pages are rendered on the server with html/template from
// the same interfaces the JSON API serves; a little JavaScript (static/
// app.js) follows GET /api/v1/events — Server-Sent Events, or the long
// poll where the server has no stream — and re-fetches the page's live
// region when something it shows changed. Everything is embedded: no
// build step, no resource from another origin (the Content-Security-
// Policy says default-src 'self').
package dashboard

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// Options are what the dashboard reads and steers: the same interfaces
// the JSON API serves.
type Options struct {
	Pipelines    api.Pipelines
	Environments api.Environments
	Rollouts     api.Rollouts
	Runs         api.AnalysisRuns
	// Events is the event log; nil shows no live updates from the
	// server's side (the pages still follow /api/v1/events).
	Events api.Events
	// Logger logs failed requests; nil is slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil is time.Now.
	Now func() time.Time
}

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// Bounds on what a request may ask.
const (
	maxParam     = 200 // bytes of a path value or query parameter
	maxPipelines = 100 // pipelines listed
	maxRuns      = 100 // analysis runs searched for a rollout's
	maxLogTail   = 4 << 10
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Dashboard serves the pages. Its zero value is not usable: New makes one.
type Dashboard struct {
	o       Options
	log     *slog.Logger
	pages   *template.Template
	mux     *http.ServeMux
	history *history
}

// New returns the dashboard's handler, to be mounted at Prefix.
func New(o Options) *Dashboard {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dashboard{o: o, log: o.Logger, mux: http.NewServeMux(), history: newHistory()}
	d.pages = template.Must(template.New("").Funcs(funcs(o.Now)).ParseFS(templateFS, "templates/*.html"))
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree has it
	}
	d.mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", staticHandler(http.FileServerFS(static))))
	d.handle("GET "+Prefix+"login", d.login)
	d.handle("GET "+Prefix+"{$}", d.listPipelines)
	d.handle("GET "+Prefix+"pipelines/{id}", d.showPipeline)
	d.handle("POST "+Prefix+"pipelines/{id}/cancel", d.cancelPipeline)
	d.handle("GET "+Prefix+"environments", d.listEnvironments)
	d.handle("GET "+Prefix+"rollouts", d.listRollouts)
	d.handle("GET "+Prefix+"rollouts/{env}/{app}", d.showRollout)
	d.handle("POST "+Prefix+"rollouts/{env}/{app}/{action}", d.steerRollout)
	d.handle(Prefix, func(http.ResponseWriter, *http.Request) error { return errNotFound })
	return d
}

var _ http.Handler = (*Dashboard)(nil)

func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	d.mux.ServeHTTP(w, r)
}

// staticHandler lets browsers keep the assets for a while: they change
// only with the binary.
func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (d *Dashboard) handle(pattern string, f handlerFunc) {
	d.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			d.writeError(w, r, err)
		}
	})
}

// errNotFound is a page that does not exist; errBadRequest a request out
// of bounds.
var (
	errNotFound   = errors.New("not found")
	errBadRequest = errors.New("bad request")
)

// writeError maps err to a status and a message safe to show, and logs
// the detail of a server error.
func (d *Dashboard) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, errNotFound), errors.Is(err, pipeline.ErrNotFound), errors.Is(err, rollout.ErrNoRollout), errors.Is(err, analysis.ErrRunNotFound):
		status, msg = http.StatusNotFound, "not found"
	case errors.Is(err, errBadRequest):
		status, msg = http.StatusBadRequest, err.Error()
	default:
		d.log.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	}
	d.render(w, r, status, "error", page{Title: http.StatusText(status), Data: msg})
}

// page is what every page template gets.
type page struct {
	Title string
	// Nav is the navigation entry to mark current.
	Nav    string
	Caller auth.Caller
	// Live, when set, makes app.js follow the event log and re-fetch the
	// page's live region on events of these kinds (and names).
	Live *live
	// Flash is a message after an action (a fixed text, never echoed
	// from the request).
	Flash     string
	FlashBad  bool
	Generated time.Time
	Data      any
}

// live configures app.js for a page.
type live struct {
	Kinds string // space-separated event kinds
	Name  string // only events about this name ("" any)
	Seq   uint64 // the newest event when the page was rendered
	// Every, when above 0, also refreshes the page every so many seconds
	// (what changes without an event: analysis measurements).
	Every int
}

func (d *Dashboard) liveFor(kinds, name string) *live {
	return &live{Kinds: kinds, Name: name, Seq: d.lastSeq()}
}

// lastSeq is the newest event's sequence number (0 when none).
func (d *Dashboard) lastSeq() uint64 {
	if d.o.Events == nil {
		return 0
	}
	evs, _ := d.o.Events.Since(0, events.Capacity)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// render writes the page template name with p. Templates are executed
// into a buffer first so that a failing one answers 500, not half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Caller = auth.CallerFrom(r.Context())
	p.Generated = d.o.Now()
	var buf bytes.Buffer
	if err := d.pages.ExecuteTemplate(&buf, name, p); err != nil {
		d.log.Error("rendering dashboard page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// param returns a path value, refused past maxParam bytes.
func param(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if v == "" || len(v) > maxParam {
		return "", fmt.Errorf("%w: %s", errNotFound, name)
	}
	return v, nil
}

// login serves the login form; POST is auth.Protect's.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var msg string
	switch q.Get("why") {
	case "failed":
		msg = "That token is not valid. Paste the admin or the read token."
	case "expired":
		msg = "Your session ended (it expired, its token was rotated, or the server restarted). Log in again."
	case "loggedout":
		msg = "You are logged out."
	}
	next := q.Get("next")
	if len(next) > maxParam*2 {
		next = ""
	}
	d.render(w, r, http.StatusOK, "login", page{Title: "Log in", Flash: msg, FlashBad: q.Get("why") == "failed",
		Data: struct{ Next string }{next}})
	return nil
}
