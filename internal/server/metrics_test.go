package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
)

// acceptCounter is a loopback listener that counts the connections made
// to it, to show an address was never dialled.
type acceptCounter struct {
	ln      net.Listener
	accepts atomic.Int64
}

func newAcceptCounter(t *testing.T) *acceptCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &acceptCounter{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepts.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return c
}

func (c *acceptCounter) url() string { return "http://" + c.ln.Addr().String() }

// promServer answers instant queries like a Prometheus server.
func promServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v1/query" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.5"]}]}}`)
		}
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

// TestProvidersAllowList resolves metric addresses the way analysis runs
// do at run time, for templates already in the artifact store.
func TestProvidersAllowList(t *testing.T) {
	ctx := context.Background()
	prom := promServer(t, nil)
	refused := newAcceptCounter(t)
	closed := func() string { // a port nothing listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := "http://" + ln.Addr().String()
		ln.Close()
		return addr
	}()
	redirector := promServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, refused.url()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
	m := &metricsPlane{allowed: analysis.NewAddresses([]string{prom.URL + "/", redirector.URL})}
	tests := []struct {
		name    string
		address string
		wantErr string // "" means the query answers 0.5
	}{
		{name: "allowed, config has a trailing slash", address: prom.URL},
		{name: "allowed, template has a trailing slash", address: prom.URL + "/"},
		{name: "open port not allowed", address: refused.url(),
			wantErr: fmt.Sprintf("prometheus address %q is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)", refused.url())},
		{name: "closed port not allowed, same answer", address: closed,
			wantErr: fmt.Sprintf("prometheus address %q is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)", closed)},
		{name: "allowed host, other path", address: prom.URL + "/other",
			wantErr: fmt.Sprintf("prometheus address %q is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)", prom.URL+"/other")},
		{name: "cloud metadata", address: "http://169.254.169.254/latest",
			wantErr: `prometheus address "http://169.254.169.254/latest" is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := m.providers(tt.address)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, analysis.ErrAddressNotAllowed) {
					t.Fatalf("providers(%s) = %v, want %q", tt.address, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Query(ctx, "up", time.Now())
			if err != nil || len(got) != 1 || got[0] != 0.5 {
				t.Fatalf("Query = %v, %v; want [0.5]", got, err)
			}
		})
	}
	t.Run("an allowed server cannot redirect elsewhere", func(t *testing.T) {
		p, err := m.providers(redirector.URL)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Query(ctx, "up", time.Now()); err == nil {
			t.Fatal("query through a redirect succeeded")
		}
	})
	t.Run("a run with a refused address connects nowhere", func(t *testing.T) {
		tmpl, err := analysis.ParseTemplate([]byte(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: m
    provider: {prometheus: {address: "` + refused.url() + `", query: up}}
`))
		if err != nil {
			t.Fatal(err)
		}
		run, err := analysis.NewRun("r", []*analysis.Template{tmpl}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := run.Execute(ctx, m.providers, nil, nil)
		if err == nil && res.Phase == analysis.PhaseSuccessful {
			t.Fatalf("run with a refused address succeeded: %+v", res)
		}
	})
	if n := refused.accepts.Load(); n != 0 {
		t.Fatalf("the refused address was dialled %d times", n)
	}
}
