package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSummarise(t *testing.T) {
	run := func(target string, round int, rate float64, p99 time.Duration, cpu time.Duration, requests int64) Run {
		return Run{Target: target, Round: round, ProxyCPU: cpu, BackendRequests: [2]int64{requests * 4 / 5, requests / 5},
			Wrk: WrkResult{RequestsPerSec: rate, Requests: requests, P50: p99 / 4, P99: p99}}
	}
	rep := &Report{Runs: []Run{
		run(TargetDirect, 1, 36000, 4*time.Millisecond, 0, 720000),
		run(TargetGateway, 1, 6000, 28*time.Millisecond, 27*time.Second, 120000),
		run(TargetNginx, 1, 21000, 9*time.Millisecond, 14*time.Second, 420000),
		run(TargetDirect, 2, 34000, 5*time.Millisecond, 0, 680000),
		run(TargetGateway, 2, 5000, 30*time.Millisecond, 22*time.Second, 100000),
		run(TargetNginx, 2, 23000, 8*time.Millisecond, 14*time.Second, 460000),
		run(TargetGateway, 3, 5800, 26*time.Millisecond, 26*time.Second, 116000),
	}}
	rep.summarise()
	if len(rep.Summary) != 3 {
		t.Fatalf("%d summaries, want 3", len(rep.Summary))
	}
	gw := rep.Summary[1]
	if gw.Target != TargetGateway || gw.RequestsPerSec != 5800 || gw.MinRequestsPerSec != 5000 || gw.MaxRequestsPerSec != 6000 ||
		gw.P99 != 28*time.Millisecond || gw.FirstBackendSharePct != 80 {
		t.Errorf("gateway summary %+v", gw)
	}
	if got := rep.Summary[2].RequestsPerSec; got != 22000 {
		t.Errorf("nginx median of two = %v, want 22000", got)
	}
	if got, want := rep.GatewayToNginx.RequestsPerSec, 5800.0/22000; got != want {
		t.Errorf("gateway/nginx req/s = %v, want %v", got, want)
	}
	if got := rep.GatewayToNginx.ProxyCPU; got < 6.9 || got > 7.1 { // medians: 224 ms / 31.9 ms per 1,000
		t.Errorf("gateway/nginx CPU = %v, want about 7.0", got)
	}
	if rep.GatewayToDirect.ProxyCPU != 0 {
		t.Errorf("gateway/direct CPU = %v, want 0 (direct has no proxy)", rep.GatewayToDirect.ProxyCPU)
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "gateway/nginx:  req/s 0.26×") {
		t.Errorf("table:\n%s", b.String())
	}
}
