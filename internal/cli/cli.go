// Package cli is the runway command line: serve, demo, token, and the API
// clients for pipelines, environments, rollouts, analysis runs and events,
// which print tables for people and JSON or YAML for scripts, and exit
// with codes scripts can branch on (see exit.go).
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/runway-cd/runway/internal/dataplane"
	"github.com/runway-cd/runway/internal/demo"
	"github.com/runway-cd/runway/internal/server"
)

// Run executes the command line and returns the exit code (see
// ExitOK and the other Exit constants).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv, now: time.Now, terminal: isTTY}
	return a.run(ctx, args)
}

// app is one run of the command line: where it writes, and what it asks
// of its environment (replaced in tests).
type app struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	now            func() time.Time
	terminal       func(io.Writer) bool

	// noColor is --no-color.
	noColor bool
	// parsed is set once the command line was parsed and its arguments
	// validated: an error before that is a usage error.
	parsed bool
	// root is the command tree of the run.
	root *cobra.Command
}

const rootLong = `Runway takes every pushed change of an app through a throwaway staging
environment, then into production by a canary rollout.

The API commands (pipelines, envs, rollout, analysisruns, events) find the
API and its token in --api/--token, RUNWAY_API/RUNWAY_TOKEN,
RUNWAY_TOKEN_FILE, the token file in your config dir, or the server's
config with -c. They print tables for people and, with -o json or -o yaml,
data for scripts. Colour is used only on a terminal, never with NO_COLOR
set or --no-color.

` + exitCodesHelp

func (a *app) run(ctx context.Context, args []string) int {
	root := &cobra.Command{
		Use:           "runway",
		Short:         "Every change through a throwaway staging environment, then a canary into production",
		Long:          rootLong,
		Version:       versionInfo().short(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  runway serve -c runway.yaml
  runway pipelines ls --app web
  runway pipelines logs web-42 -f
  runway rollout watch web
  runway completion bash > /etc/bash_completion.d/runway`,
		PersistentPreRun: func(*cobra.Command, []string) { a.parsed = true },
	}
	a.root = root
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.PersistentFlags().BoolVar(&a.noColor, "no-color", false, "never colour the output (as NO_COLOR does)")
	root.AddCommand(serveCmd(), gatewayCmd(), a.demoCmd(), BenchCmd(), a.pipelinesCmd(), a.cancelCmd(), a.eventsCmd(),
		a.envsCmd(), a.rolloutCmd(), a.analysisRunsCmd(), tokenCmd(), exportCmd(), a.versionCmd())
	err := root.ExecuteContext(ctx)
	code := exitCode(err, a.parsed)
	if err != nil && !(code == ExitInterrupted && ctx.Err() != nil) { // Ctrl-C needs no message
		fmt.Fprintln(a.stderr, "runway:", err)
	}
	return code
}

// color reports whether output to stdout is coloured: on a terminal,
// without --no-color, NO_COLOR (set to anything) or TERM=dumb.
func (a *app) color() bool {
	if a.noColor {
		return false
	}
	if _, set := a.lookupEnv("NO_COLOR"); set {
		return false
	}
	if term, _ := a.lookupEnv("TERM"); term == "dumb" {
		return false
	}
	return a.terminal(a.stdout)
}

// printer prints for cmd in format.
func (a *app) printer(cmd *cobra.Command, format string) (*printer, error) {
	p := &printer{out: cmd.OutOrStdout(), format: format, color: a.color(), now: a.now()}
	return p, p.check()
}

// isTTY reports whether w is a terminal.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// apiGroup is a command whose subcommands share the API flags and -o.
type apiGroup struct {
	client clientOptions
	format string
}

// newGroup makes the command use with the API flags and -o for all its
// subcommands. Run without a subcommand it prints its help; with an
// unknown one it is a usage error.
func newGroup(use, short, example string) (*cobra.Command, *apiGroup) {
	g := &apiGroup{}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	addClientFlagSet(cmd.PersistentFlags(), &g.client)
	outputFlag(cmd, &g.format)
	return cmd, g
}

// exactArgs is cobra.ExactArgs naming what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %s (got %d arguments)", cmd.CommandPath(), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
	}
	return nil
}

func serveCmd() *cobra.Command {
	var opts struct{ config, logLevel string }
	cmd := &cobra.Command{
		Use:     "serve",
		Short:   "Run the control plane and the gateway",
		Example: "  runway serve -c runway.yaml\n  runway serve -c runway.yaml --log-level debug",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.LoadConfig(opts.config)
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			srv, err := server.New(cmd.Context(), cfg, logger)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&opts.config, "config", "c", "runway.yaml", "server config file")
	cmd.Flags().StringVar(&opts.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func gatewayCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "gateway --admin SOCKET [--listen ADDR] [--metrics ADDR] [--state FILE] [--supervise FILE] [--domain D] [--allow-backend CIDR]... [--reserved ADDR]...",
		Short:              "Run the data plane: the gateway and the supervisor of replicas and databases (runway serve starts and adopts it)",
		Example:            "  runway gateway --admin /run/runway/gateway.sock --listen :8080",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := dataplane.Main(cmd.Context(), args); code != 0 {
				return fmt.Errorf("gateway exited with code %d", code)
			}
			return nil
		},
	}
}

func (a *app) demoCmd() *cobra.Command {
	var opts demo.RunOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole method end to end for the example app homelabping",
		Long: `Run the whole method end to end for the example app homelabping: a
first version, then a change through staging and a canary into production.

On a terminal it shows a live view of the steps, their durations and the
canary's weight; otherwise (a pipe, a file, CI set, NO_COLOR set or
--no-color) it prints plain lines.`,
		Example: `  runway demo
  runway demo --keep          # leave it running, print the API URL and token
  runway demo | tee demo.log  # plain lines`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(filepath.Join(opts.Examples, "homelabping", "runway.yaml")); err != nil {
				return fmt.Errorf("examples not found in %q (run from the Runway source tree or pass --examples): %w", opts.Examples, err)
			}
			_, ci := a.lookupEnv("CI")
			opts.Live = a.color() && !ci
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Examples, "examples", "examples", "the examples/ directory of the Runway source tree")
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "leave everything running and print the API and gateway URLs")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

// RunIfInvoked makes a test binary stand in for the runway binary when a
// test starts "<binary> serve ..." or "<binary> gateway ...": it then runs
// that command until SIGTERM or SIGINT and exits. Call it first in
// TestMain.
func RunIfInvoked() {
	if len(os.Args) < 2 || os.Args[1] != "serve" && os.Args[1] != "gateway" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
