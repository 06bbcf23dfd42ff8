package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ensureInitialised runs initdb unless dir/data exists. initdb writes into
// a dir/data.init.* of its own, renamed to dir/data only when complete, so
// an interrupted initdb is redone rather than mistaken for a cluster, and
// an initdb a killed control plane left running (it outlives its parent)
// cannot write into the new one's directory.
func ensureInitialised(ctx context.Context, cfg Config, own owner, dir string) error {
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(data); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking data dir: %w", err)
	}
	removeUnfinished(cfg, dir)
	staging := filepath.Join(dir, fmt.Sprintf("data.init.%d", time.Now().UnixNano()))
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"),
		"-D", staging,
		"--no-sync",
		"--no-instructions",
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"-U", superuser,
		"-E", "UTF8",
		"--locale=C",
	)
	var out bytes.Buffer
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = own.sysProcAttr()
	cmd.Cancel = func() error {
		// initdb runs postgres in bootstrap mode; end the whole group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(staging)
		return fmt.Errorf("running initdb in %s: %w: %s", dir, err, strings.TrimSpace(out.String()))
	}
	if err := os.Rename(staging, data); err != nil {
		return fmt.Errorf("moving initialised data dir into place: %w", err)
	}
	cfg.Logger.Info("postgres: initialised cluster", "dir", dir)
	return nil
}

// removeUnfinished removes the data dirs of initdb runs that never
// finished. One whose initdb a killed control plane left running may not
// go at once (it still writes); it is left for a later start, since every
// initdb has a directory of its own.
func removeUnfinished(cfg Config, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // dir is created by initdb's caller; nothing to remove
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "data.init") {
			continue
		}
		u := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(u); err != nil {
			cfg.Logger.Warn("postgres: could not remove an unfinished initdb's data dir yet", "dir", u, "err", err)
			continue
		}
		cfg.Logger.Info("postgres: removed an unfinished initdb's data dir", "dir", u)
	}
}
