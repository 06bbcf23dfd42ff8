package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reports.
type WrkResult struct {
	// RequestsPerSec is wrk's "Requests/sec".
	RequestsPerSec float64 `json:"requestsPerSec"`
	// Requests and Duration are from "N requests in D".
	Requests int64         `json:"requests"`
	Duration time.Duration `json:"durationNs"`
	// P50, P75, P90 and P99 are wrk's latency distribution (--latency).
	P50 time.Duration `json:"p50Ns"`
	P75 time.Duration `json:"p75Ns"`
	P90 time.Duration `json:"p90Ns"`
	P99 time.Duration `json:"p99Ns"`
	// SocketErrors sums the connect, read, write and timeout errors; zero
	// when wrk printed no "Socket errors" line.
	SocketErrors int64 `json:"socketErrors"`
	// Non2xx counts responses with a status outside 2xx and 3xx.
	Non2xx int64 `json:"non2xx3xx"`
	// CPU is the user+system CPU time wrk itself used (from its rusage,
	// not its output): the load generator shares the machine's cores with
	// the proxy and the backends.
	CPU time.Duration `json:"cpuNs"`
}

// ErrWrkOutput is returned, wrapped, when wrk's output lacks a number the
// benchmark needs.
var ErrWrkOutput = errors.New("unexpected wrk output")

// ParseWrk parses the text wrk 4 prints with --latency:
//
//	  Latency Distribution
//	     50%  635.00us
//	     99%    2.51ms
//	  412345 requests in 20.00s, 50.12MB read
//	  Socket errors: connect 0, read 0, write 0, timeout 3
//	  Non-2xx or 3xx responses: 5
//	Requests/sec:  20617.25
//
// Durations carry wrk's units (us, ms, s, m, h). Requests/sec, the request
// count and the p50 and p99 lines are required.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveRate, haveCount, have50, have99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for lines := 0; sc.Scan() && lines < 1000; lines++ {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return WrkResult{}, fmt.Errorf("%w: requests/sec %q: %v", ErrWrkOutput, f[1], err)
			}
			r.RequestsPerSec, haveRate = v, true
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return WrkResult{}, fmt.Errorf("%w: request count %q: %v", ErrWrkOutput, f[0], err)
			}
			d, err := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return WrkResult{}, fmt.Errorf("%w: run duration %q: %v", ErrWrkOutput, f[3], err)
			}
			r.Requests, r.Duration, haveCount = n, d, true
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := time.ParseDuration(f[1])
			if err != nil {
				return WrkResult{}, fmt.Errorf("%w: latency %q: %v", ErrWrkOutput, line, err)
			}
			switch f[0] {
			case "50%":
				r.P50, have50 = d, true
			case "75%":
				r.P75 = d
			case "90%":
				r.P90 = d
			case "99%":
				r.P99, have99 = d, true
			}
		case strings.HasPrefix(line, "Socket errors:"):
			n, err := sumSocketErrors(strings.TrimPrefix(line, "Socket errors:"))
			if err != nil {
				return WrkResult{}, fmt.Errorf("%w: %q: %v", ErrWrkOutput, line, err)
			}
			r.SocketErrors = n
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return WrkResult{}, fmt.Errorf("%w: %q: %v", ErrWrkOutput, line, err)
			}
			r.Non2xx = n
		}
	}
	if err := sc.Err(); err != nil {
		return WrkResult{}, fmt.Errorf("reading wrk output: %w", err)
	}
	var missing []string
	for name, ok := range map[string]bool{"Requests/sec": haveRate, "request count": haveCount, "50%": have50, "99%": have99} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return WrkResult{}, fmt.Errorf("%w: no %s (was --latency given?)", ErrWrkOutput, strings.Join(missing, ", "))
	}
	return r, nil
}

// sumSocketErrors adds the numbers of "connect 0, read 0, write 0, timeout 0".
func sumSocketErrors(s string) (int64, error) {
	var sum int64
	for part := range strings.SplitSeq(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			return 0, fmt.Errorf("socket error field %q", part)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("socket error count %q: %w", part, err)
		}
		sum += n
	}
	return sum, nil
}

// WrkOptions are the load wrk generates.
type WrkOptions struct {
	// Path is the wrk binary.
	Path string
	// Threads and Connections are wrk's -t and -c.
	Threads, Connections int
	// Duration is wrk's -d, rounded down to whole seconds (at least 1).
	Duration time.Duration
	// Host, if not empty, is sent as the Host header of every request.
	Host string
}

// args returns wrk's command line for url.
func (o WrkOptions) args(url string) []string {
	secs := max(int(o.Duration/time.Second), 1)
	a := []string{"-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections),
		"-d", strconv.Itoa(secs) + "s", "--latency", "--timeout", "5s"}
	if o.Host != "" {
		a = append(a, "-H", "Host: "+o.Host)
	}
	return append(a, url)
}

// runWrk runs wrk against url and parses what it printed. wrk is bounded
// by its duration plus a margin, and killed when ctx ends.
func runWrk(ctx context.Context, o WrkOptions, url string) (WrkResult, string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Path, o.args(url)...)
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return WrkResult{}, string(out), fmt.Errorf("running wrk against %s: %w", url, cerr)
	}
	if err != nil {
		return WrkResult{}, string(out), fmt.Errorf("running wrk against %s: %w: %s", url, err, tail(string(out), 500))
	}
	r, err := ParseWrk(string(out))
	if err != nil {
		return WrkResult{}, string(out), fmt.Errorf("running wrk against %s: %w", url, err)
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, string(out), nil
}
