package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/server"
)

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Rotate or show the API tokens",
		Example: "  runway token show -c runway.yaml\n  runway token rotate read -c runway.yaml"}
	cmd.AddCommand(tokenRotateCmd(), tokenShowCmd())
	return cmd
}

func tokenRotateCmd() *cobra.Command {
	var opts struct {
		config string
		show   bool
	}
	cmd := &cobra.Command{
		Use:   "rotate [admin|read|all]",
		Short: "Replace API tokens in the server's data dir; the running server takes the new ones at once",
		Long: "Replace API tokens in the server's data dir with new random ones. The running server " +
			"accepts only the new tokens from its next request on, without a restart. The new admin " +
			"token is printed only when stdout is a terminal or with --show.",
		Example:   "  runway token rotate -c runway.yaml\n  runway token rotate read -c runway.yaml --show",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{auth.AdminToken, auth.ReadToken, "all"},
		RunE: func(cmd *cobra.Command, args []string) error {
			which := "all"
			if len(args) == 1 {
				which = args[0]
			}
			cfg, err := loadServerConfig(opts.config)
			if err != nil {
				return err
			}
			rotated, err := auth.Rotate(cfg.DataDir, which)
			if err != nil {
				return fmt.Errorf("rotating tokens: %w", err)
			}
			out := cmd.OutOrStdout()
			for _, name := range []string{auth.AdminToken, auth.ReadToken} {
				tok, ok := rotated[name]
				if !ok {
					continue
				}
				fmt.Fprintf(out, "rotated the %s token: %s\n", name, auth.Path(cfg.DataDir, name))
				if overridden(cfg, name) {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: the server takes its %s token from its config or environment (api.%sToken / RUNWAY_%s_TOKEN), not from this file: change it there\n",
						name, name, map[string]string{auth.AdminToken: "ADMIN", auth.ReadToken: "READ"}[name])
				}
				if name == auth.AdminToken && (opts.show || isTerminal(out)) {
					fmt.Fprintf(out, "new admin token: %s\n", tok)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.config, "config", "c", "runway.yaml", "server config file (its dataDir holds the tokens)")
	cmd.Flags().BoolVar(&opts.show, "show", false, "print the new admin token even when stdout is not a terminal")
	return cmd
}

func tokenShowCmd() *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "show [admin|read]",
		Short: "Print the token the CLI would send (or, with -c and a name, that token of the server)",
		Long: "Print the API token the other commands would send, found as they find it (--token, " +
			"RUNWAY_TOKEN, --token-file, RUNWAY_TOKEN_FILE, the user's config dir, -c). With -c and " +
			"admin or read, print that token from the server's data dir. The token goes to stdout, " +
			"where it came from to stderr: export RUNWAY_TOKEN=$(runway token show -c runway.yaml)",
		Example:   "  export RUNWAY_TOKEN=$(runway token show -c runway.yaml)\n  runway token show read -c runway.yaml",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{auth.AdminToken, auth.ReadToken},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if opts.config == "" {
					return errors.New("token show " + args[0] + " needs -c with the server's config file")
				}
				if args[0] != auth.AdminToken && args[0] != auth.ReadToken {
					return fmt.Errorf("token %q: want admin or read", args[0])
				}
				cfg, err := loadServerConfig(opts.config)
				if err != nil {
					return err
				}
				path := auth.Path(cfg.DataDir, args[0])
				tok, err := auth.ReadFile(path)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "token from", path)
				fmt.Fprintln(cmd.OutOrStdout(), tok)
				return nil
			}
			c, err := opts.resolve()
			if err != nil {
				return err
			}
			if c.token == "" {
				return c.unauthorized("nothing found")
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "token from", c.source)
			fmt.Fprintln(cmd.OutOrStdout(), c.token)
			return nil
		},
	}
	addClientFlags(cmd, &opts)
	return cmd
}

func loadServerConfig(path string) (server.Config, error) {
	cfg, err := server.LoadConfig(path)
	if err != nil {
		return server.Config{}, err
	}
	if cfg.DataDir == "" {
		return server.Config{}, fmt.Errorf("%s: dataDir is required", path)
	}
	return cfg, nil
}

// overridden reports whether the server takes the token named which from
// its config or environment rather than its file.
func overridden(cfg server.Config, which string) bool {
	if which == auth.AdminToken {
		return cfg.API.AdminToken != "" || os.Getenv("RUNWAY_ADMIN_TOKEN") != ""
	}
	return cfg.API.ReadToken != "" || os.Getenv("RUNWAY_READ_TOKEN") != ""
}

// isTerminal reports whether w is a terminal (not a file or a pipe that
// logs may keep).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
