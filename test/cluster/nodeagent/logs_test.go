package nodeagent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// logRig is an agent with one pod whose container ran twice, the second
// run still going, serving its kubelet API handler.
type logRig struct {
	srv     *httptest.Server
	logPath string
	exited  chan struct{}
}

func newLogRig(t *testing.T) *logRig {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	first := "old 1\nold 2\n"
	if err := os.WriteFile(logPath, []byte(first+"new 1\nnew 2\nnew 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a := &Agent{log: slog.New(slog.DiscardHandler), node: "n", ctx: ctx, pods: map[types.UID]*podWorker{}}
	exited := make(chan struct{})
	w := &podWorker{
		gone: make(chan struct{}),
		pod:  &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}},
		mains: []*containerStatus{{
			name: "c", logPath: logPath, runStarts: []int64{0, int64(len(first))}, exited: exited,
			state: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}},
	}
	a.pods["u"] = w
	mux := http.NewServeMux()
	mux.Handle("GET /containerLogs/{namespace}/{pod}/{container}", handler(a.log, a.containerLogs))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &logRig{srv: srv, logPath: logPath, exited: exited}
}

func (r *logRig) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestContainerLogs(t *testing.T) {
	r := newLogRig(t)
	tests := []struct {
		name, query string
		code        int
		want        string
	}{
		{name: "current run", query: "", code: 200, want: "new 1\nnew 2\nnew 3\n"},
		{name: "tail", query: "?tailLines=2", code: 200, want: "new 2\nnew 3\n"},
		{name: "limit", query: "?limitBytes=7", code: 200, want: "new 1\nn"},
		{name: "previous", query: "?previous=true", code: 200, want: "old 1\nold 2\n"},
		{name: "bad tail", query: "?tailLines=x", code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := r.get(t, "/containerLogs/ns/p/c"+tt.query)
			if code != tt.code || (tt.code == 200 && body != tt.want) {
				t.Fatalf("GET = %d %q, want %d %q", code, body, tt.code, tt.want)
			}
		})
	}
	if code, _ := r.get(t, "/containerLogs/ns/nope/c"); code != 404 {
		t.Fatalf("unknown pod: %d", code)
	}
	if code, _ := r.get(t, "/containerLogs/ns/p/nope"); code != 404 {
		t.Fatalf("unknown container: %d", code)
	}
}

func TestContainerLogsFollow(t *testing.T) {
	r := newLogRig(t)
	resp, err := http.Get(r.srv.URL + "/containerLogs/ns/p/c?follow=true&tailLines=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	read := func(want string) {
		t.Helper()
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != want {
			t.Fatalf("read %q, %v; want %q", buf, err, want)
		}
	}
	read("new 3\n")
	f, err := os.OpenFile(r.logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("new 4\n")
	read("new 4\n")
	f.WriteString("last\n")
	close(r.exited)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasSuffix(string(rest), "last\n") {
		t.Fatalf("after exit: %q, %v", rest, err)
	}
}
