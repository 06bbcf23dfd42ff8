package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/bench"
)

// BenchCmd returns "runway bench": measurements that are reported, never
// asserted (docs/benchmarks.md).
func BenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "bench",
		Short:   "Measure Runway against the tools it must keep up with",
		Example: "  runway bench gateway",
	}
	cmd.AddCommand(benchGatewayCmd(), benchBackendCmd())
	return cmd
}

func benchGatewayCmd() *cobra.Command {
	var opts bench.GatewayOptions
	var output, logLevel string
	cmd := &cobra.Command{
		Use:     "gateway",
		Short:   "Compare the gateway with nginx and with no proxy, in one run, with wrk",
		Example: "  runway bench gateway",
		Long: `Starts two trivial backends on loopback, Runway's gateway (this binary's
"gateway" command) with a canary split over them, and Debian's nginx with the
same split as a weighted upstream with keep-alive connections; then runs wrk
against one backend directly, the gateway and nginx in alternating rounds.
Prints requests/s, p50/p99 latency and the proxy's CPU per 1,000 requests,
and writes the raw numbers as JSON. Installs wrk and nginx from Debian when
they are missing and it runs as root (--install=false to refuse).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			opts.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if output == "" {
				output = filepath.Join(os.TempDir(), "runway-bench-gateway-"+time.Now().UTC().Format("20060102T150405Z")+".json")
			}
			rep, err := bench.Gateway(cmd.Context(), opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%d CPUs, load %s to %s; %s, worker_processes %s; wrk -t%d -c%d -d%s, %d rounds, split %d/%d\n\n",
				rep.Machine.CPUs, rep.Machine.LoadBefore, rep.Machine.LoadAfter, rep.Machine.Nginx, rep.Setup.NginxWorkers,
				rep.Setup.Threads, rep.Setup.Connections, rep.Setup.Duration, rep.Setup.Rounds, rep.Setup.Split, 100-rep.Setup.Split)
			if err := rep.WriteTable(out); err != nil {
				return err
			}
			if err := rep.WriteJSON(output); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nraw numbers: %s\n", output)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Connections, "connections", 64, "wrk connections (-c), kept alive")
	f.IntVar(&opts.Threads, "threads", 2, "wrk threads (-t)")
	f.DurationVar(&opts.Duration, "duration", 20*time.Second, "length of each measured run")
	f.IntVar(&opts.Rounds, "rounds", 3, "runs of each target, alternating")
	f.DurationVar(&opts.Warmup, "warmup", 2*time.Second, "unrecorded run of each target before the first round (negative: none)")
	f.IntVar(&opts.Split, "split", 80, "percent of requests to the first backend (stable); the rest go to the second (canary)")
	f.StringVar(&opts.NginxWorkers, "nginx-workers", "auto", `nginx worker_processes: "auto" (one per core, Debian's default) or a number`)
	f.BoolVar(&opts.Install, "install", true, "install missing wrk and nginx with apt-get (as root only)")
	f.StringVar(&opts.Runway, "runway", "", "runway binary to start as the gateway and the backends (default: this binary)")
	f.StringVar(&opts.Dir, "dir", "", "directory for configurations and logs, kept afterwards (default: a temporary one, removed on success)")
	f.StringVarP(&output, "output", "o", "", "JSON file for the raw numbers (default: runway-bench-gateway-<time>.json in the temporary directory)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// benchBackendCmd is the trivial backend the gateway benchmark starts as a
// process of its own.
func benchBackendCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "backend [--listen ADDR] [--name NAME]",
		Short:              "Serve the gateway benchmark's backend (started by runway bench gateway)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := bench.BackendMain(cmd.Context(), args, cmd.ErrOrStderr()); code != 0 {
				return fmt.Errorf("bench backend exited with code %d", code)
			}
			return nil
		},
	}
}
