package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one gateway benchmark, as written to JSON.
type Report struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	// Setup is the load and split measured.
	Setup Setup `json:"setup"`
	// Runs is every measured run, in the order run.
	Runs []Run `json:"runs"`
	// Summary has one entry per target: medians over its rounds.
	Summary []Summary `json:"summary"`
	// GatewayToNginx and GatewayToDirect compare the medians.
	GatewayToNginx  Ratio `json:"gatewayToNginx"`
	GatewayToDirect Ratio `json:"gatewayToDirect"`
}

// Machine is where the benchmark ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"goVersion"`
	Nginx     string `json:"nginx"`
	Wrk       string `json:"wrk"`
	// LoadBefore and LoadAfter are /proc/loadavg when the benchmark
	// started and ended: other work on the machine skews every target.
	LoadBefore string `json:"loadBefore"`
	LoadAfter  string `json:"loadAfter"`
}

// Setup is the load of every run.
type Setup struct {
	Connections  int           `json:"connections"`
	Threads      int           `json:"threads"`
	Duration     time.Duration `json:"durationNs"`
	Rounds       int           `json:"rounds"`
	Split        int           `json:"splitPercent"`
	NginxWorkers string        `json:"nginxWorkers"`
}

// Run is one wrk run against one target.
type Run struct {
	Target string    `json:"target"`
	Round  int       `json:"round"`
	Wrk    WrkResult `json:"wrk"`
	// ProxyCPU is the user+system CPU time of the proxy's processes
	// (nginx: master and workers) during the run; zero for direct.
	ProxyCPU time.Duration `json:"proxyCpuNs"`
	// BackendCPU is that of both backends together.
	BackendCPU time.Duration `json:"backendCpuNs"`
	// BackendRequests is how many requests each backend served during the
	// run, as the backends counted them.
	BackendRequests [2]int64 `json:"backendRequests"`
	// BackendConns is how many connections each backend accepted during
	// the run (besides the benchmark's own one for counting): about the
	// number of wrk's connections for direct, and few for a proxy that
	// keeps its connections to the backends alive.
	BackendConns [2]int64 `json:"backendConnections"`
}

// ProxyCPUPer1000 returns the proxy's CPU milliseconds per 1,000 requests.
func (r Run) ProxyCPUPer1000() float64 { return perThousand(r.ProxyCPU, r.Wrk.Requests) }

// WrkCPUPer1000 is ProxyCPUPer1000 for wrk.
func (r Run) WrkCPUPer1000() float64 { return perThousand(r.Wrk.CPU, r.Wrk.Requests) }

// BackendCPUPer1000 is ProxyCPUPer1000 for the backends.
func (r Run) BackendCPUPer1000() float64 { return perThousand(r.BackendCPU, r.Wrk.Requests) }

// FirstShare returns the percentage of the run's requests the first
// backend served.
func (r Run) FirstShare() float64 {
	total := r.BackendRequests[0] + r.BackendRequests[1]
	if total == 0 {
		return 0
	}
	return 100 * float64(r.BackendRequests[0]) / float64(total)
}

func perThousand(d time.Duration, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond) / (float64(requests) / 1000)
}

// Summary is the medians of one target's runs, with the range of its
// requests per second.
type Summary struct {
	Target               string        `json:"target"`
	RequestsPerSec       float64       `json:"requestsPerSec"`
	MinRequestsPerSec    float64       `json:"minRequestsPerSec"`
	MaxRequestsPerSec    float64       `json:"maxRequestsPerSec"`
	P50                  time.Duration `json:"p50Ns"`
	P99                  time.Duration `json:"p99Ns"`
	ProxyCPUMsPer1000    float64       `json:"proxyCpuMsPer1000"`
	BackendCPUMsPer1000  float64       `json:"backendCpuMsPer1000"`
	WrkCPUMsPer1000      float64       `json:"wrkCpuMsPer1000"`
	FirstBackendSharePct float64       `json:"firstBackendSharePercent"`
	BackendConns         float64       `json:"backendConnections"`
	Errors               int64         `json:"errors"`
}

// Ratio compares the gateway's medians with another target's: above 1
// means the gateway's number is larger.
type Ratio struct {
	RequestsPerSec float64 `json:"requestsPerSec"`
	P50            float64 `json:"p50"`
	P99            float64 `json:"p99"`
	// ProxyCPU compares CPU per request; zero against direct.
	ProxyCPU float64 `json:"proxyCpuPerRequest,omitempty"`
}

func newReport(ctx context.Context, o GatewayOptions, wrkPath, nginxPath string) *Report {
	return &Report{
		Started: time.Now().UTC(),
		Machine: Machine{CPUs: runtime.NumCPU(), Kernel: kernel(), GoVersion: runtime.Version(), LoadBefore: loadAvg(),
			Nginx: version(ctx, nginxPath, "-v"), Wrk: version(ctx, wrkPath, "--version")},
		Setup: Setup{Connections: o.Connections, Threads: o.Threads, Duration: o.Duration,
			Rounds: o.Rounds, Split: o.Split, NginxWorkers: o.NginxWorkers},
	}
}

// version returns the first line a binary prints about its version.
func version(ctx context.Context, bin string, flag string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, flag).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

func kernel() string { return readTrimmed("/proc/sys/kernel/osrelease") }

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	f := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// summarise fills Summary and the ratios from Runs.
func (rep *Report) summarise() {
	rep.Machine.LoadAfter = loadAvg()
	rep.Summary = nil
	by := map[string]Summary{}
	for _, name := range []string{TargetDirect, TargetGateway, TargetNginx} {
		var runs []Run
		for _, r := range rep.Runs {
			if r.Target == name {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		s := Summary{Target: name}
		rates := collect(runs, func(r Run) float64 { return r.Wrk.RequestsPerSec })
		s.RequestsPerSec = median(rates)
		s.MinRequestsPerSec, s.MaxRequestsPerSec = slices.Min(rates), slices.Max(rates)
		s.P50 = time.Duration(median(collect(runs, func(r Run) float64 { return float64(r.Wrk.P50) })))
		s.P99 = time.Duration(median(collect(runs, func(r Run) float64 { return float64(r.Wrk.P99) })))
		s.ProxyCPUMsPer1000 = median(collect(runs, Run.ProxyCPUPer1000))
		s.BackendCPUMsPer1000 = median(collect(runs, Run.BackendCPUPer1000))
		s.WrkCPUMsPer1000 = median(collect(runs, Run.WrkCPUPer1000))
		s.FirstBackendSharePct = median(collect(runs, Run.FirstShare))
		s.BackendConns = median(collect(runs, func(r Run) float64 { return float64(r.BackendConns[0] + r.BackendConns[1]) }))
		for _, r := range runs {
			s.Errors += r.Wrk.SocketErrors + r.Wrk.Non2xx
		}
		by[name] = s
		rep.Summary = append(rep.Summary, s)
	}
	gw, ok := by[TargetGateway]
	if !ok {
		return
	}
	if n, ok := by[TargetNginx]; ok {
		rep.GatewayToNginx = ratio(gw, n)
		rep.GatewayToNginx.ProxyCPU = div(gw.ProxyCPUMsPer1000, n.ProxyCPUMsPer1000)
	}
	if d, ok := by[TargetDirect]; ok {
		rep.GatewayToDirect = ratio(gw, d)
	}
}

func ratio(a, b Summary) Ratio {
	return Ratio{RequestsPerSec: div(a.RequestsPerSec, b.RequestsPerSec),
		P50: div(float64(a.P50), float64(b.P50)), P99: div(float64(a.P99), float64(b.P99))}
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func collect(runs []Run, f func(Run) float64) []float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	return v
}

// median returns the median of v (the mean of the middle two for an even
// count); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteTable writes every run, the medians and the ratios as text tables.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "target\tround\treq/s\tp50\tp99\tproxy CPU\tbackends CPU\twrk CPU\tto backend a\tnew backend conns\terrors\t\n"
	fmt.Fprint(tw, header)
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f%%\t%d\t%d\t\n", r.Target, r.Round, r.Wrk.RequestsPerSec,
			ms(r.Wrk.P50), ms(r.Wrk.P99), proxyCPU(r.Target, r.ProxyCPUPer1000()), r.BackendCPUPer1000(), r.WrkCPUPer1000(), r.FirstShare(),
			r.BackendConns[0]+r.BackendConns[1], r.Wrk.SocketErrors+r.Wrk.Non2xx)
	}
	for _, s := range rep.Summary {
		fmt.Fprintf(tw, "%s\tmedian\t%.0f\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f%%\t%.0f\t%d\t\n", s.Target, s.RequestsPerSec,
			ms(s.P50), ms(s.P99), proxyCPU(s.Target, s.ProxyCPUMsPer1000), s.BackendCPUMsPer1000, s.WrkCPUMsPer1000, s.FirstBackendSharePct,
			s.BackendConns, s.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "CPU: milliseconds of user+system time per 1,000 requests\n"+
		"\ngateway/nginx:  req/s %.2f×, p50 %.2f×, p99 %.2f×, proxy CPU per request %.2f×\n"+
		"gateway/direct: req/s %.2f×, p50 %.2f×, p99 %.2f×\n",
		rep.GatewayToNginx.RequestsPerSec, rep.GatewayToNginx.P50, rep.GatewayToNginx.P99, rep.GatewayToNginx.ProxyCPU,
		rep.GatewayToDirect.RequestsPerSec, rep.GatewayToDirect.P50, rep.GatewayToDirect.P99)
	return err
}

// proxyCPU formats a proxy's CPU per 1,000 requests; direct has no proxy.
func proxyCPU(target string, msPer1000 float64) string {
	if target == TargetDirect {
		return "-"
	}
	return fmt.Sprintf("%.1f", msPer1000)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// WriteJSON writes the report, indented, to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding benchmark report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing benchmark report: %w", err)
	}
	return nil
}
