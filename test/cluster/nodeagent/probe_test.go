package nodeagent

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestThreshold(t *testing.T) {
	tests := []struct {
		name               string
		success, failure   int32
		initial            bool
		outcomes           []bool
		wantResults        []bool
		wantChangedIndexes []int
	}{
		{
			name: "readiness: one success makes ready, three failures unready", success: 1, failure: 3, initial: false,
			outcomes:           []bool{false, true, false, false, true, false, false, false},
			wantResults:        []bool{false, true, true, true, true, true, true, false},
			wantChangedIndexes: []int{1, 7},
		},
		{
			name: "liveness: alive until failureThreshold failures in a row", success: 1, failure: 2, initial: true,
			outcomes:           []bool{false, true, false, false},
			wantResults:        []bool{true, true, true, false},
			wantChangedIndexes: []int{3},
		},
		{
			name: "successThreshold 2", success: 2, failure: 1, initial: false,
			outcomes:           []bool{true, false, true, true, false},
			wantResults:        []bool{false, false, false, true, false},
			wantChangedIndexes: []int{3, 4},
		},
		{
			name: "zero thresholds count as one", success: 0, failure: 0, initial: false,
			outcomes:           []bool{true, false},
			wantResults:        []bool{true, false},
			wantChangedIndexes: []int{0, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newThreshold(&corev1.Probe{SuccessThreshold: tt.success, FailureThreshold: tt.failure}, tt.initial)
			var changedAt []int
			for i, ok := range tt.outcomes {
				res, changed := th.observe(ok)
				if res != tt.wantResults[i] {
					t.Fatalf("after outcome %d (%v): result %v, want %v", i, ok, res, tt.wantResults[i])
				}
				if changed {
					changedAt = append(changedAt, i)
				}
			}
			if !equalInts(changedAt, tt.wantChangedIndexes) {
				t.Fatalf("changed at %v, want %v", changedAt, tt.wantChangedIndexes)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTimingDefaults(t *testing.T) {
	got := timingOf(&corev1.Probe{InitialDelaySeconds: 2})
	want := probeTiming{initialDelay: 2 * time.Second, period: 10 * time.Second, timeout: time.Second}
	if got != want {
		t.Fatalf("timingOf = %+v, want %+v", got, want)
	}
}

func TestProbeOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/header":
			if r.Header.Get("X-Probe") != "yes" {
				w.WriteHeader(http.StatusBadRequest)
			}
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	get := func(path string, p intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: p}}, TimeoutSeconds: 2}
	}
	tests := []struct {
		name   string
		probe  *corev1.Probe
		wantOK bool
	}{
		{name: "http 200 by number", probe: get("/ok", intstr.FromInt32(int32(port))), wantOK: true},
		{name: "http by named port", probe: get("/ok", intstr.FromString("http")), wantOK: true},
		{name: "http redirect followed", probe: get("/redirect", intstr.FromString("http")), wantOK: true},
		{name: "http 503", probe: get("/healthz", intstr.FromString("http"))},
		{name: "unknown port name", probe: get("/ok", intstr.FromString("nope"))},
		{name: "http headers", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/header", Port: intstr.FromString("http"), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}}}}}, wantOK: true},
		{name: "tcp open", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}}, wantOK: true},
		{name: "tcp closed", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(closedPort))}}}},
		{name: "grpc unsupported", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(port)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probeOnce(t.Context(), tt.probe, probeTarget{podIP: host, container: c})
			if (err == nil) != tt.wantOK {
				t.Fatalf("probeOnce = %v, want success %v", err, tt.wantOK)
			}
		})
	}
}
