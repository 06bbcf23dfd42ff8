package bench

import (
	"errors"
	"slices"
	"testing"
	"time"
)

const wrkOutput = `Running 20s test @ http://127.0.0.1:41234/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.05ms    2.91ms  61.02ms   89.71%
    Req/Sec    11.32k     1.02k   13.60k    71.25%
  Latency Distribution
     50%    2.31ms
     75%    3.42ms
     90%    5.38ms
     99%   14.92ms
  450612 requests in 20.01s, 58.45MB read
Requests/sec:  22519.62
Transfer/sec:      2.92MB
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    WrkResult
		wantErr bool
	}{
		{
			name: "wrk 4 with --latency",
			out:  wrkOutput,
			want: WrkResult{RequestsPerSec: 22519.62, Requests: 450612, Duration: 20010 * time.Millisecond,
				P50: 2310 * time.Microsecond, P75: 3420 * time.Microsecond, P90: 5380 * time.Microsecond, P99: 14920 * time.Microsecond},
		},
		{
			name: "microseconds, seconds and errors",
			out: `  Latency Distribution
     50%  635.00us
     75%    1.00s
     90%    1.50s
     99%    2.00m
  1200 requests in 1.00m, 150.00KB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:     20.00
`,
			want: WrkResult{RequestsPerSec: 20, Requests: 1200, Duration: time.Minute,
				P50: 635 * time.Microsecond, P75: time.Second, P90: 1500 * time.Millisecond, P99: 2 * time.Minute,
				SocketErrors: 10, Non2xx: 17},
		},
		{
			name: "last line without a newline",
			out:  "  50%  1.00ms\n  99%  2.00ms\n  10 requests in 1.00s, 1.00KB read\nRequests/sec: 10.00",
			want: WrkResult{RequestsPerSec: 10, Requests: 10, Duration: time.Second, P50: time.Millisecond, P99: 2 * time.Millisecond},
		},
		{name: "no --latency", out: "  10 requests in 1.00s, 1.00KB read\nRequests/sec: 10.00\n", wantErr: true},
		{name: "connection refused", out: "unable to connect to 127.0.0.1:1 Connection refused\n", wantErr: true},
		{name: "empty", out: "", wantErr: true},
		{name: "bad rate", out: "  50%  1.00ms\n  99%  2.00ms\n  10 requests in 1.00s, 1KB read\nRequests/sec: lots\n", wantErr: true},
		{name: "bad latency unit", out: "  50%  1.00parsecs\n", wantErr: true},
		{name: "bad socket errors", out: "  Socket errors: connect x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWrk(tt.out)
			if tt.wantErr {
				if !errors.Is(err, ErrWrkOutput) {
					t.Fatalf("ParseWrk: error %v, want one wrapping ErrWrkOutput", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWrk: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseWrk:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add(wrkOutput)
	f.Add("  Socket errors: connect 1, read 2, write 3, timeout 4\n  Non-2xx or 3xx responses: 17\n")
	f.Fuzz(func(t *testing.T, out string) {
		// Never panics; whatever it rejects, it says why.
		if _, err := ParseWrk(out); err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

func TestWrkArgs(t *testing.T) {
	o := WrkOptions{Threads: 2, Connections: 64, Duration: 1500 * time.Millisecond, Host: "bench.localhost"}
	got := o.args("http://127.0.0.1:1/")
	want := []string{"-t", "2", "-c", "64", "-d", "1s", "--latency", "--timeout", "5s", "-H", "Host: bench.localhost", "http://127.0.0.1:1/"}
	if !slices.Equal(got, want) {
		t.Errorf("args = %q, want %q", got, want)
	}
}
