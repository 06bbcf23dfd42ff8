// Package cli is the runway command line: serve, demo, token, and API
// clients for pipelines and rollouts.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/dataplane"
	"github.com/runway-cd/runway/internal/demo"
	"github.com/runway-cd/runway/internal/server"
)

// Run executes the command line and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "runway",
		Short:         "Every change through a throwaway staging environment, then a canary into production",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(), gatewayCmd(), demoCmd(), BenchCmd(), pipelinesCmd(), cancelCmd(), eventsCmd(), envsCmd(), rolloutCmd(), analysisRunsCmd(), tokenCmd(), exportCmd())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "runway:", err)
		return 1
	}
	return 0
}

func serveCmd() *cobra.Command {
	var opts struct{ config, logLevel string }
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane and the gateway",
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
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := dataplane.Main(cmd.Context(), args); code != 0 {
				return fmt.Errorf("gateway exited with code %d", code)
			}
			return nil
		},
	}
}

func demoCmd() *cobra.Command {
	var opts demo.RunOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole method end to end for the example app homelabping",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(filepath.Join(opts.Examples, "homelabping", "runway.yaml")); err != nil {
				return fmt.Errorf("examples not found in %q (run from the Runway source tree or pass --examples): %w", opts.Examples, err)
			}
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Examples, "examples", "examples", "the examples/ directory of the Runway source tree")
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "leave everything running and print the API and gateway URLs")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func pipelinesCmd() *cobra.Command {
	return listOrGetCmd("pipelines [ID]", "List pipelines, or show one with its steps and logs", "/api/v1/pipelines")
}

func cancelCmd() *cobra.Command {
	var opts clientOptions
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a pipeline: its running step stops, its staging environment is torn down, nothing is promoted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAPI(cmd, &opts, http.MethodPost, "/api/v1/pipelines/"+url.PathEscape(args[0])+"/cancel", map[string]string{"reason": reason})
		},
	}
	addClientFlags(cmd, &opts)
	cmd.Flags().StringVar(&reason, "reason", "cancelled from the command line", "why (one line, at most 200 bytes are kept)")
	return cmd
}

func eventsCmd() *cobra.Command {
	var opts clientOptions
	var since uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show recent events of environments, rollouts and pipelines, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			q.Set("since", strconv.FormatUint(since, 10))
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			return callAPI(cmd, &opts, http.MethodGet, "/api/v1/events?"+q.Encode(), nil)
		},
	}
	addClientFlags(cmd, &opts)
	cmd.Flags().Uint64Var(&since, "since", 0, "only events after this sequence number (the seq of the last one seen)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (default: the server's, 200; at most 2000)")
	return cmd
}

func envsCmd() *cobra.Command {
	return listOrGetCmd("envs [NAME]", "List environments, or show one: apps, versions, URLs and each replica's health and restarts", "/api/v1/environments")
}

func analysisRunsCmd() *cobra.Command {
	return listOrGetCmd("analysisruns [NAME]", "List analysis runs, or show one with every measurement", "/api/v1/analysisruns")
}

// listOrGetCmd is a command that prints the collection at path, or with an
// argument the one object it names.
func listOrGetCmd(use, short, path string) *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := path
			if len(args) == 1 {
				p += "/" + url.PathEscape(args[0])
			}
			return callAPI(cmd, &opts, http.MethodGet, p, nil)
		},
	}
	addClientFlags(cmd, &opts)
	return cmd
}

func rolloutCmd() *cobra.Command {
	var opts clientOptions
	var env, reason string
	var full bool
	cmd := &cobra.Command{Use: "rollout", Short: "Show and steer canary rollouts"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List rollouts",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return callAPI(cmd, &opts, http.MethodGet, "/api/v1/rollouts", nil)
		},
	}
	rolloutPath := func(app, action string) string {
		return fmt.Sprintf("/api/v1/rollouts/%s/%s/%s", url.PathEscape(env), url.PathEscape(app), action)
	}
	promote := &cobra.Command{
		Use:   "promote APP",
		Short: "End the current pause of APP's rollout (--full: skip every remaining step)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAPI(cmd, &opts, http.MethodPost, rolloutPath(args[0], "promote")+fmt.Sprintf("?full=%v", full), nil)
		},
	}
	abort := &cobra.Command{
		Use:   "abort APP",
		Short: "Abort APP's rollout: traffic back to stable, git reverted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAPI(cmd, &opts, http.MethodPost, rolloutPath(args[0], "abort"), map[string]string{"reason": reason})
		},
	}
	retry := &cobra.Command{
		Use:   "retry APP",
		Short: "Run the inconclusive analysis of APP's paused rollout again, as a fresh run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAPI(cmd, &opts, http.MethodPost, rolloutPath(args[0], "retry"), nil)
		},
	}
	addClientFlags(list, &opts)
	cmd.AddCommand(list)
	for _, c := range []*cobra.Command{promote, abort, retry} {
		addClientFlags(c, &opts)
		c.Flags().StringVar(&env, "env", "production", "environment")
		cmd.AddCommand(c)
	}
	abort.Flags().StringVar(&reason, "reason", "aborted from the command line", "why (one line, at most 200 bytes are kept)")
	promote.Flags().BoolVar(&full, "full", false, "skip every remaining step, pause and analysis")
	return cmd
}

// callAPI resolves the endpoint and token of opts and calls the API.
func callAPI(cmd *cobra.Command, opts *clientOptions, method, path string, body any) error {
	c, err := opts.resolve()
	if err != nil {
		return err
	}
	return c.call(cmd.Context(), cmd.OutOrStdout(), method, path, body)
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
