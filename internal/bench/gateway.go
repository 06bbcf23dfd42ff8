package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
)

// Targets, in the order of the first round.
const (
	TargetDirect  = "direct"
	TargetGateway = "gateway"
	TargetNginx   = "nginx"
)

// benchHost is the Host header of every request: the gateway's production
// route of the app "bench". nginx and the backends ignore it.
const (
	benchApp  = "bench"
	benchHost = benchApp + ".localhost"
)

// GatewayOptions configure the gateway benchmark. Zero values take the
// defaults given, which are the setup issue 9 measured.
type GatewayOptions struct {
	// Runway is the runway binary, started as "gateway" and as
	// "bench backend". Empty means this program (os.Executable).
	Runway string
	// Connections and Threads are wrk's -c and -t: 64 and 2.
	Connections, Threads int
	// Duration is the length of one measured run of one target: 20s.
	Duration time.Duration
	// Rounds is how many times each target is measured: 3. The targets
	// alternate, and each round starts one target later than the last,
	// so no target always runs first.
	Rounds int
	// Warmup is a run of each target before the first round that is not
	// recorded: 2s. Negative means none.
	Warmup time.Duration
	// Split is the percentage of requests sent to the first backend (the
	// stable version; the rest go to the canary): 80.
	Split int
	// NginxWorkers is nginx's worker_processes: "auto" (Debian's default,
	// one worker per core).
	NginxWorkers string
	// Install installs missing wrk and nginx from Debian (as root only).
	Install bool
	// Dir is where configurations, state and logs go. Empty means a new
	// temporary directory, removed afterwards unless the benchmark failed.
	Dir string
	// Logger receives progress. Nil means slog.Default().
	Logger *slog.Logger
}

func (o *GatewayOptions) defaults() error {
	if o.Connections == 0 {
		o.Connections = 64
	}
	if o.Threads == 0 {
		o.Threads = 2
	}
	if o.Duration == 0 {
		o.Duration = 20 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Warmup == 0 {
		o.Warmup = 2 * time.Second
	}
	if o.Split == 0 {
		o.Split = 80
	}
	if o.NginxWorkers == "" {
		o.NginxWorkers = "auto"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Connections < 1 || o.Connections > 10000:
		return fmt.Errorf("connections %d: want 1 to 10000", o.Connections)
	case o.Threads < 1 || o.Threads > o.Connections:
		return fmt.Errorf("threads %d: want 1 to the number of connections", o.Threads)
	case o.Duration < time.Second || o.Duration > time.Hour:
		return fmt.Errorf("duration %s: want 1s to 1h", o.Duration)
	case o.Rounds < 1 || o.Rounds > 100:
		return fmt.Errorf("rounds %d: want 1 to 100", o.Rounds)
	case o.Split < 1 || o.Split > 99:
		return fmt.Errorf("split %d: want 1 to 99 (percent to the first backend)", o.Split)
	}
	if o.Runway == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the runway binary: %w", err)
		}
		o.Runway = exe
	}
	return nil
}

// bench is one run of the gateway benchmark: its processes and addresses.
type bench struct {
	o        GatewayOptions
	log      *slog.Logger
	dir      string
	wrk      WrkOptions
	backends [2]*process
	addrs    [2]string
	targets  map[string]*target
	client   *http.Client
	procs    []*process
}

// target is one thing wrk is pointed at.
type target struct {
	name string
	url  string
	// proxy is the process whose CPU is the target's cost; nil for direct.
	proxy *process
}

// Gateway runs the gateway benchmark and returns its report. It stops
// every process it started before it returns.
func Gateway(ctx context.Context, o GatewayOptions) (rep *Report, err error) {
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("gateway benchmark: %w", err)
	}
	b := &bench{o: o, log: o.Logger, targets: map[string]*target{},
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	defer b.client.CloseIdleConnections()
	defer b.stopAll()
	if b.dir = o.Dir; b.dir == "" {
		if b.dir, err = os.MkdirTemp("", "runway-bench-gateway-"); err != nil {
			return nil, fmt.Errorf("gateway benchmark: %w", err)
		}
		defer func() {
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w (logs in %s)", err, b.dir)
				return
			}
			b.stopAll() // before removing the directory their logs are in
			os.RemoveAll(b.dir)
		}()
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, fmt.Errorf("gateway benchmark: %w", err)
	}
	rep, err = b.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway benchmark: %w", err)
	}
	return rep, nil
}

func (b *bench) run(ctx context.Context) (*Report, error) {
	wrkPath, err := findWrk(ctx, b.o.Install, b.log)
	if err != nil {
		return nil, err
	}
	nginxPath, err := findNginx(ctx, b.o.Install, b.log)
	if err != nil {
		return nil, err
	}
	b.wrk = WrkOptions{Path: wrkPath, Threads: b.o.Threads, Connections: b.o.Connections, Duration: b.o.Duration, Host: benchHost}
	rep := newReport(ctx, b.o, wrkPath, nginxPath)
	if err := b.startBackends(ctx); err != nil {
		return nil, err
	}
	b.targets[TargetDirect] = &target{name: TargetDirect, url: "http://" + b.addrs[0] + "/"}
	if err := b.startGateway(ctx); err != nil {
		return nil, err
	}
	if err := b.startNginx(ctx, nginxPath); err != nil {
		return nil, err
	}
	order := []string{TargetDirect, TargetGateway, TargetNginx}
	if b.o.Warmup > 0 {
		warm := b.wrk
		warm.Duration = b.o.Warmup
		for _, name := range order {
			b.log.Info("warming up", "target", name, "duration", b.o.Warmup)
			if _, _, err := runWrk(ctx, warm, b.targets[name].url); err != nil {
				return nil, fmt.Errorf("warming up %s: %w", name, err)
			}
		}
	}
	for round := range b.o.Rounds {
		for i := range order {
			name := order[(round+i)%len(order)]
			b.log.Info("measuring", "target", name, "round", round+1, "of", b.o.Rounds, "duration", b.o.Duration)
			r, err := b.measure(ctx, b.targets[name], round+1)
			if err != nil {
				return nil, err
			}
			rep.Runs = append(rep.Runs, r)
		}
	}
	rep.summarise()
	return rep, nil
}

// startBackends starts the two backends as "runway bench backend".
func (b *bench) startBackends(ctx context.Context) error {
	for i, name := range []string{"a", "b"} {
		argv := []string{b.o.Runway, "bench", "backend", "--listen", "127.0.0.1:0", "--name", name}
		p, err := start("backend "+name, argv, b.dir, filepath.Join(b.dir, "backend-"+name+".log"), b.log)
		if err != nil {
			return err
		}
		b.procs = append(b.procs, p)
		addr, err := p.listenAddr(ctx, 10*time.Second)
		if err != nil {
			return err
		}
		if err := waitHTTP(ctx, p, "http://"+addr+"/", "", 10*time.Second); err != nil {
			return fmt.Errorf("starting backend %s: %w", name, err)
		}
		b.backends[i], b.addrs[i] = p, addr
	}
	return nil
}

// startGateway starts "runway gateway" with its own admin socket and state
// file, and routes the app "bench" to the backends with a canary split.
func (b *bench) startGateway(ctx context.Context) error {
	gw := filepath.Join(b.dir, "gateway")
	if err := os.MkdirAll(gw, 0o700); err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	sock := filepath.Join(gw, "admin.sock")
	argv := []string{b.o.Runway, "gateway", "--admin", sock, "--listen", "127.0.0.1:0",
		"--state", filepath.Join(gw, "routes.json")}
	p, err := start("gateway", argv, b.dir, filepath.Join(b.dir, "gateway.log"), b.log)
	if err != nil {
		return err
	}
	b.procs = append(b.procs, p)
	addr, err := p.listenAddr(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	route := gateway.Route{Env: "production", App: benchApp,
		StableVersion: "a", Stable: []gateway.Backend{{Addr: b.addrs[0]}},
		CanaryVersion: "b", Canary: []gateway.Backend{{Addr: b.addrs[1]}},
		CanaryWeight: 100 - b.o.Split}
	if err := setRoute(ctx, p, remote.New(sock, "").WithLogger(b.log), route); err != nil {
		return err
	}
	url := "http://" + addr + "/"
	if err := waitHTTP(ctx, p, url, benchHost, 10*time.Second); err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	b.targets[TargetGateway] = &target{name: TargetGateway, url: url, proxy: p}
	return nil
}

// setRoute sets the route once the gateway's admin socket answers: the
// traffic listener is up a moment before the admin socket is.
func setRoute(ctx context.Context, p *process, c *remote.Client, r gateway.Route) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.SetRoute(r)
		if err == nil {
			return nil
		}
		if errors.Is(err, gateway.ErrInvalidRoute) {
			return fmt.Errorf("routing the benchmark through the gateway: %w", err)
		}
		if p.exited() {
			return p.exitError()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("routing the benchmark through the gateway: %w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (b *bench) startNginx(ctx context.Context, bin string) error {
	dir := filepath.Join(b.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("starting nginx: %w", err)
	}
	wa, wb := splitWeights(b.o.Split)
	c := NginxConfig{Dir: dir, Workers: b.o.NginxWorkers, Keepalive: b.o.Connections,
		Upstream: []WeightedBackend{{Addr: b.addrs[0], Weight: wa}, {Addr: b.addrs[1], Weight: wb}}}
	if os.Geteuid() == 0 {
		// As root nginx runs its workers as "nobody", whose group Debian
		// calls nogroup; Debian's own configuration uses www-data.
		c.User = "www-data"
		if _, err := user.Lookup(c.User); err != nil {
			c.User = "nobody nogroup"
		}
		if err := os.Chmod(b.dir, 0o755); err != nil {
			return fmt.Errorf("starting nginx: %w", err)
		}
	}
	p, c, err := startNginx(ctx, bin, c, b.log)
	if err != nil {
		return err
	}
	b.procs = append(b.procs, p)
	b.targets[TargetNginx] = &target{name: TargetNginx, url: "http://" + c.Listen + "/", proxy: p}
	return nil
}

// measure runs wrk once against t and records what it and /proc say.
func (b *bench) measure(ctx context.Context, t *target, round int) (Run, error) {
	for _, p := range b.procs {
		if p.exited() {
			return Run{}, p.exitError()
		}
	}
	countsBefore, err := b.counts(ctx)
	if err != nil {
		return Run{}, err
	}
	proxyBefore, backendBefore, err := b.cpu(t)
	if err != nil {
		return Run{}, err
	}
	w, _, err := runWrk(ctx, b.wrk, t.url)
	if err != nil {
		return Run{}, fmt.Errorf("measuring %s, round %d: %w", t.name, round, err)
	}
	proxyAfter, backendAfter, err := b.cpu(t)
	if err != nil {
		return Run{}, err
	}
	countsAfter, err := b.counts(ctx)
	if err != nil {
		return Run{}, err
	}
	r := Run{Target: t.name, Round: round, Wrk: w,
		ProxyCPU: proxyAfter - proxyBefore, BackendCPU: backendAfter - backendBefore,
		BackendRequests: [2]int64{countsAfter[0].requests - countsBefore[0].requests, countsAfter[1].requests - countsBefore[1].requests},
		BackendConns:    [2]int64{countsAfter[0].conns - countsBefore[0].conns, countsAfter[1].conns - countsBefore[1].conns}}
	if t.proxy == nil {
		r.ProxyCPU = 0
	}
	if w.SocketErrors > 0 || w.Non2xx > 0 {
		b.log.Warn("errors during the run", "target", t.name, "round", round, "socketErrors", w.SocketErrors, "non2xx", w.Non2xx)
	}
	return r, nil
}

// cpu returns the CPU time used so far by t's proxy (zero for direct) and
// by both backends.
func (b *bench) cpu(t *target) (proxy, backends time.Duration, err error) {
	if t.proxy != nil {
		if proxy, err = cpuTime(t.proxy.pid()); err != nil {
			return 0, 0, err
		}
	}
	for _, p := range b.backends {
		d, err := cpuTime(p.pid())
		if err != nil {
			return 0, 0, err
		}
		backends += d
	}
	return proxy, backends, nil
}

// counts returns how many requests each backend has served and how many
// connections it has accepted.
func (b *bench) counts(ctx context.Context) ([2]backendCount, error) {
	var c [2]backendCount
	for i, addr := range b.addrs {
		n, err := readCount(ctx, b.client, addr)
		if err != nil {
			return c, err
		}
		c[i] = n
	}
	return c, nil
}

// stopAll stops every process started, the last started first.
func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
}
