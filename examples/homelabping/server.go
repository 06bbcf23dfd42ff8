package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// rowQuerier is the part of the database pool that /ping needs.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// database is the part of the database pool that the server needs.
type database interface {
	rowQuerier
	Ping(ctx context.Context) error
}

// server holds the app's handlers and their shared dependencies.
type server struct {
	db       database
	logger   *slog.Logger
	registry *prometheus.Registry
	requests *prometheus.CounterVec
}

func newServer(db database, logger *slog.Logger) *server {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "homelabping_requests_total",
		Help: "HTTP requests answered, by route path and status code.",
	}, []string{"path", "code"})
	reg.MustRegister(requests)
	return &server{db: db, logger: logger, registry: reg, requests: requests}
}

// routes returns the app's HTTP handler.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ping", s.handle("/ping", newPingHandler(s.db).serve))
	mux.Handle("GET /healthz", s.handle("/healthz", s.healthz))
	metrics := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", s.handle("/metrics", func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	}))
	return mux
}

// healthz answers 200 "ok" while the database answers a ping.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return &httpError{Code: http.StatusServiceUnavailable, Message: "database unavailable", Err: err}
	}
	return writeText(w, "ok")
}

// readPingName reads the name that /ping answers from the database.
func readPingName(ctx context.Context, db rowQuerier) (string, error) {
	var name string
	if err := db.QueryRow(ctx, "SELECT name FROM pingtable LIMIT 1").Scan(&name); err != nil {
		return "", &httpError{Code: http.StatusInternalServerError, Message: "database error", Err: fmt.Errorf("reading pingtable: %w", err)}
	}
	return name, nil
}

// writeText answers 200 with a text/plain body.
func writeText(w http.ResponseWriter, body string) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := io.WriteString(w, body)
	return err
}

// httpError is an error with the status and safe message to answer with.
// Err, the detail, is logged and never sent.
type httpError struct {
	Code    int
	Message string
	Err     error
}

func (e *httpError) Error() string {
	if e.Err == nil {
		return e.Message
	}
	return e.Message + ": " + e.Err.Error()
}

func (e *httpError) Unwrap() error { return e.Err }

// handle adapts a handler that returns an error: it maps the error to a
// status, logs it and counts every answer in homelabping_requests_total.
func (s *server) handle(path string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		if err := h(rec, r); err != nil {
			s.writeError(rec, r, err)
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
	})
}

func (s *server) writeError(w *statusRecorder, r *http.Request, err error) {
	code, msg := http.StatusInternalServerError, "internal error"
	var he *httpError
	if errors.As(err, &he) {
		code, msg = he.Code, he.Message
	}
	s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	if w.code != 0 {
		return // the handler already started its answer
	}
	http.Error(w, msg, code)
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
