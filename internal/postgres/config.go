package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Config says where PostgreSQL's programs are and who runs them.
type Config struct {
	// BinDir holds initdb and postgres. "" discovers it with
	// `pg_config --bindir`, then the highest /usr/lib/postgresql/*/bin.
	BinDir string
	// RunAsUser is the OS user that owns and runs the instance; it is used
	// only when Runway runs as root (PostgreSQL refuses root). "" means
	// "postgres" if that user exists, else "nobody".
	RunAsUser string
	// SecretsDir holds this instance's passwords, one 0600 file per role
	// (<role>.password; the superuser's is runway.password), and nothing
	// else: Remove deletes it. It must be readable by Runway's OS user
	// only, so never inside the instance dir, which the server's OS user
	// owns. Required; created 0700 if missing.
	SecretsDir string
	// Logger receives what Start changes on disk. nil means slog.Default().
	Logger *slog.Logger
	// TemplateDir holds cluster templates: a new instance's data dir is a
	// copy of a cluster initialised once per PostgreSQL binary, initdb
	// settings and owning OS user, instead of a fresh initdb (a copy takes
	// a fraction of initdb's second). Copies of one template share its
	// system identifier, which is fine for servers that never replicate
	// from one another; their superuser passwords are the instance's own
	// from the first start on (see Start). Only Runway's OS user should
	// write it; it is created 0700 (plus o+x for an unprivileged server
	// user) if missing. "" means no template: initdb for every instance.
	TemplateDir string
	// Launcher runs the postmaster, e.g. the data plane's supervisor, which
	// restarts it when it dies. nil means as a child of this process, with
	// nothing restarting it.
	Launcher Launcher

	// noReadyCopies makes every copy of a template now, as if its pool of
	// ready copies were empty, and refills nothing (benchmarks compare).
	noReadyCopies bool
}

// withDefaults returns cfg with BinDir discovered and Logger set.
func (cfg Config) withDefaults(ctx context.Context) (Config, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BinDir == "" {
		dir, err := discoverBinDir(ctx)
		if err != nil {
			return cfg, err
		}
		cfg.BinDir = dir
	}
	for _, prog := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, prog)); err != nil {
			return cfg, fmt.Errorf("checking PostgreSQL bin dir %s: %w", cfg.BinDir, err)
		}
	}
	return cfg, nil
}

// discoverBinDir asks pg_config first and falls back to the Debian layout,
// preferring the highest major version installed.
func discoverBinDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output()
	if err == nil {
		dir := strings.TrimSpace(string(out))
		if hasServer(dir) {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(a, b int) bool {
		return majorVersion(matches[a]) > majorVersion(matches[b])
	})
	for _, dir := range matches {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", errors.New("finding PostgreSQL: no pg_config on PATH and no /usr/lib/postgresql/*/bin with initdb and postgres")
}

func hasServer(dir string) bool {
	for _, prog := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, prog)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// majorVersion reads 15 out of /usr/lib/postgresql/15/bin; -1 if it is not a number.
func majorVersion(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}
