package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Bounds of the traffic listener (TrafficServer).
const (
	// trafficReadHeaderTimeout bounds the request line and headers: a
	// client that trickles them holds a connection for nothing.
	trafficReadHeaderTimeout = 10 * time.Second
	// trafficReadTimeout bounds reading a whole request, body included. It
	// is generous: uploads through the gateway are normal.
	trafficReadTimeout = 60 * time.Second
	// trafficWriteTimeout bounds the whole response, from the end of the
	// request headers. Streamed responses (server-sent events, long
	// downloads, slow backends) are normal through a gateway, so it is
	// generous: it exists to free connections of clients that stopped
	// reading, not to bound backends, which have ResponseHeaderTimeout.
	trafficWriteTimeout = 120 * time.Second
	// trafficIdleTimeout closes keep-alive connections nobody uses.
	trafficIdleTimeout = 120 * time.Second
	// maxHeaderBytes bounds request headers on every gateway listener.
	maxHeaderBytes = 64 << 10
)

// TrafficServer returns the http.Server for the gateway's traffic
// listener, with its timeouts and header limit; the in-process gateway of
// runway serve uses it too.
func TrafficServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: trafficReadHeaderTimeout,
		ReadTimeout:       trafficReadTimeout,
		WriteTimeout:      trafficWriteTimeout,
		IdleTimeout:       trafficIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// controlServer returns the http.Server of the admin API and the metrics
// listener: small requests and answers, tight bounds.
func controlServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ServeOptions configure a gateway process (runway gateway).
type ServeOptions struct {
	// Listen is the traffic address.
	Listen string
	// Admin is the path of the admin API's unix socket, created 0600; its
	// directory is created 0700 if missing.
	Admin string
	// Metrics, if not empty, is a loopback host:port that serves only
	// GET /metrics, for the control plane's scraper: read-only counters,
	// no secrets, and no way to change anything.
	Metrics string
	// StatePath keeps the routes, so a restarted gateway serves at once.
	StatePath string
	// Attach, if set, is called once the gateway has its routes and before
	// anything is served: the data plane hangs its supervisor on g there.
	// The handler it returns serves the admin socket's paths under
	// AttachPrefix; detach is called when Serve returns.
	Attach func(ctx context.Context, g *Gateway) (h http.Handler, detach func(), err error)
	Options
}

// AttachPrefix is where ServeOptions.Attach's handler is mounted on the
// admin socket.
const AttachPrefix = "/v1/workloads"

// Serve runs a gateway as its own process until ctx ends: traffic on
// Listen and on each route's direct listener (Options.DirectListeners is
// always on), the admin API on the unix socket Admin, metrics on Metrics,
// routes loaded from and saved to StatePath.
func Serve(ctx context.Context, o ServeOptions) error {
	if o.Admin == "" {
		return errors.New("serving gateway: no admin socket path")
	}
	if err := ParseBackendPolicy(o.Backends); err != nil {
		return fmt.Errorf("serving gateway: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening for traffic: %w", err)
	}
	lns = append(lns, ln)
	o.Self = ln.Addr().String()
	// A gateway process is what users reach: every route gets its
	// direct listener, kept in StatePath with the route.
	o.DirectListeners = true
	g := New(o.Options)
	defer g.Close()
	if err := g.LoadRoutes(o.StatePath); err != nil {
		closeAll()
		return err
	}
	an, err := listenAdmin(o.Admin)
	if err != nil {
		closeAll()
		return err
	}
	lns = append(lns, an)
	admin := g.AdminHandler(o.StatePath)
	if o.Attach != nil {
		h, detach, err := o.Attach(ctx, g)
		if err != nil {
			closeAll()
			return fmt.Errorf("serving gateway: %w", err)
		}
		defer detach()
		mux := http.NewServeMux()
		mux.Handle(AttachPrefix, h)
		mux.Handle(AttachPrefix+"/", h)
		mux.Handle("/", admin)
		admin = mux
	}
	servers := []*http.Server{TrafficServer(g, log), controlServer(admin, log)}
	if o.Metrics != "" {
		mn, err := listenMetrics(o.Metrics)
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, mn)
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", g.MetricsHandler())
		servers = append(servers, controlServer(mux, log))
	}
	log.Info("gateway listening", "pid", os.Getpid(), "listen", ln.Addr().String(), "admin", o.Admin,
		"metrics", o.Metrics, "routes", len(g.Routes()), "allowedBackends", o.Backends.Allowed)
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(lns[i]) }()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = errors.Join(serveErr, err)
		}
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return serveErr
}

// listenMetrics listens on addr, which must be a loopback IP and port.
func listenMetrics(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("metrics address %q: want a loopback IP", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics: %w", err)
	}
	return ln, nil
}

// stringsFlag is a repeatable flag.
type stringsFlag []string

func (f *stringsFlag) String() string { return strings.Join(*f, ",") }

func (f *stringsFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}

// AddFlags registers a gateway process's flags (--listen, --admin,
// --metrics, --state, --domain, --allow-backend CIDR and --reserved ADDR,
// the last two repeatable) on fs, to be parsed into o; call done after
// fs.Parse.
func AddFlags(fs *flag.FlagSet, o *ServeOptions) (done func()) {
	var allowed, reserved stringsFlag
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "traffic address")
	fs.StringVar(&o.Admin, "admin", "", "admin API unix socket path (required)")
	fs.StringVar(&o.Metrics, "metrics", "", "loopback address serving only /metrics (optional)")
	fs.StringVar(&o.StatePath, "state", "", "routes file")
	fs.StringVar(&o.Domain, "domain", "localhost", "host suffix")
	fs.Var(&allowed, "allow-backend", "CIDR backends may be in besides loopback (repeatable)")
	fs.Var(&reserved, "reserved", "host:port no backend may have, e.g. the API's (repeatable)")
	return func() { o.Backends = BackendPolicy{Allowed: allowed, Reserved: reserved} }
}

// Main runs "gateway" with command-line args (see AddFlags) and returns
// the exit code. Test binaries that stand in for the runway binary call it
// when started as a gateway.
func Main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var o ServeOptions
	done := AddFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	done()
	if err := Serve(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	return 0
}

// RunIfInvoked makes a test binary stand in for the runway binary when
// the server under test starts its gateway process ("<binary> gateway
// --listen ..."): it then serves as the gateway and exits. Call it first
// in TestMain.
func RunIfInvoked() {
	if len(os.Args) < 2 || os.Args[1] != "gateway" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := Main(ctx, os.Args[2:])
	stop()
	os.Exit(code)
}
