package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/dashboard"
)

// The API listener's bounds. No route streams today; one that does must
// lift its write deadline with http.ResponseController.SetWriteDeadline.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = 60 * time.Second
	apiWriteTimeout      = 60 * time.Second
	apiIdleTimeout       = 120 * time.Second
	apiMaxHeaderBytes    = 64 << 10
	// apiBodyLimit bounds request bodies of the API and reporter routes;
	// the webhook bounds its own (GitHub's 25 MiB).
	apiBodyLimit = 64 << 10
)

func newAPIServer(h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// protect puts every route but the webhook (HMAC), /healthz and the
// reporter's update (its expectation's token) behind the API tokens and
// the browser protections of auth.Protect.
func (s *Server) protect(mux http.Handler) http.Handler {
	return auth.Protect(mux, auth.Options{
		Tokens:        s.tokens,
		Listen:        s.cfg.Listen,
		Hosts:         s.cfg.API.Hosts,
		AnonymousRead: s.cfg.API.AnonymousRead,
		Exempt:        []string{"POST /webhooks/github", "GET /healthz", "POST /workflow/update"},
		// PromQL queries may be POSTed as forms (Grafana does): reads.
		Reads: []string{"POST /prometheus/api/v1/query"},
		// An expectation's token is a secret for the environment's hooks.
		Admin: []string{"GET /api/v1/expectations/{workflow}/token"},
		// Browsers log in at the dashboard's form: a signed session
		// cookie, never the token (docs/dashboard.md).
		Sessions: auth.NewSessions(s.tokens, auth.SessionOptions{Pages: dashboard.Prefix, Secure: s.cfg.TLS.CertFile != ""}),
	})
}

// limitBody bounds the request body to apiBodyLimit; a handler reading
// past it gets an *http.MaxBytesError.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, apiBodyLimit)
		h.ServeHTTP(w, r)
	})
}

// loadTLS reads the API's certificate when TLS is configured (nil when it
// is not).
func loadTLS(c TLSConfig) (*tls.Config, error) {
	if c.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading tls.certFile and tls.keyFile: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// serveAPI serves the API, over TLS when it is configured (New loaded the
// certificate into apiSrv.TLSConfig).
func (s *Server) serveAPI() error {
	if s.cfg.TLS.CertFile != "" {
		return s.apiSrv.ServeTLS(s.apiLn, "", "")
	}
	return s.apiSrv.Serve(s.apiLn)
}

// apiScheme is the API's URL scheme. It reads the config, not apiSrv,
// which Serve modifies.
func (s *Server) apiScheme() string {
	if s.cfg.TLS.CertFile != "" {
		return "https"
	}
	return "http"
}

// warnExposure says at start what is exposed and where the tokens are
// (their files, never their values).
func (s *Server) warnExposure() {
	if !loopbackListen(s.cfg.Listen) && s.cfg.TLS.CertFile == "" {
		s.log.Warn("the API listens beyond loopback without TLS: tokens, webhooks and reports cross the network in the clear; set tls.certFile and tls.keyFile, or listen on loopback behind a TLS proxy",
			"listen", s.cfg.Listen)
	}
	if s.cfg.API.AnonymousRead {
		s.log.Warn("api.anonymousRead is on: anyone who can reach the API reads pipelines with their step logs, environments, rollouts, analysis runs and metrics without a token")
	}
	s.log.Info("API tokens", "admin", s.tokens.Source(auth.AdminToken), "read", s.tokens.Source(auth.ReadToken))
}

// loopbackListen reports whether listen (host:port) only accepts
// connections from this machine.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
