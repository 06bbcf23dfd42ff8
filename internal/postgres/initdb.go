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

// ensureInitialised runs initdb unless dir/data exists, or with
// cfg.TemplateDir copies the template cluster (built with initdb once, see
// ensureTemplate). initdb (or the copy) writes into a dir/data.init.* of
// its own, renamed to dir/data only when complete, so an interrupted
// initdb or copy is redone rather than mistaken for a cluster, and an
// initdb a killed control plane left running (it outlives its parent)
// cannot write into the new one's directory. The superuser gets password
// (handed to initdb in a 0600 file removed right after), and the cluster
// Runway's pg_hba.conf before it first starts: no connection is ever
// trusted. A copied cluster's superuser has the template's password, kept
// in the secrets dir (initialPasswordFile) from before the rename until
// secure gives the superuser password instead.
func ensureInitialised(ctx context.Context, cfg Config, own owner, dir, password string) error {
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(data); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking data dir: %w", err)
	}
	removeUnfinished(cfg, dir)
	staging := filepath.Join(dir, fmt.Sprintf("data.init.%d", time.Now().UnixNano()))
	if cfg.TemplateDir != "" {
		ready, err := copyTemplate(ctx, cfg, own, staging)
		if err == nil {
			if err := os.Rename(staging, data); err != nil {
				return fmt.Errorf("moving copied data dir into place: %w", err)
			}
			cfg.Logger.Info("postgres: initialised cluster from template", "dir", dir, "ready_copy", ready)
			return nil
		}
		_ = os.RemoveAll(staging)
		if ctx.Err() != nil {
			return err
		}
		cfg.Logger.Warn("postgres: cluster template unusable, running initdb", "dir", dir, "err", err)
	}
	if err := dropInitialPassword(cfg.SecretsDir); err != nil {
		return err
	}
	if err := runInitdb(ctx, cfg, own, dir, staging, password); err != nil {
		return fmt.Errorf("initialising %s: %w", dir, err)
	}
	if err := os.Rename(staging, data); err != nil {
		return fmt.Errorf("moving initialised data dir into place: %w", err)
	}
	cfg.Logger.Info("postgres: initialised cluster", "dir", dir)
	return nil
}

// copyTemplate puts a copy of the template cluster at staging and records
// its superuser password as the initial one. The copy is a ready one
// (readyPool.take: a rename) when the template's pool has one, else made
// now; either way the pool is refilled in the background afterwards
// (startRefill), which also fills it on a template's first use.
func copyTemplate(ctx context.Context, cfg Config, own owner, staging string) (ready bool, err error) {
	tmpl, err := ensureTemplate(ctx, cfg, own)
	if err != nil {
		return false, err
	}
	pool := poolOf(tmpl)
	password := ""
	if !cfg.noReadyCopies {
		password, ready = pool.take(cfg, staging)
		defer startRefill(cfg, own, pool)
	}
	if !ready {
		if err := copyCluster(ctx, tmpl.dataDir, staging, own); err != nil {
			return false, err
		}
		password = tmpl.password
	}
	return ready, storeInitialPassword(cfg.SecretsDir, password)
}

// runInitdb initialises data (a new directory, or an empty one owned by
// own) with the superuser's password, and writes Runway's pg_hba.conf into
// it. The password file initdb reads is made in workDir. A failed run's
// data dir is removed.
func runInitdb(ctx context.Context, cfg Config, own owner, workDir, data, password string) error {
	pwfile, err := writePwfile(workDir, own, password)
	if err != nil {
		return err
	}
	defer os.Remove(pwfile)
	args := append([]string{"-D", data}, initdbSettings()...)
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"), append(args, "--pwfile="+pwfile)...)
	var out bytes.Buffer
	cmd.Dir = workDir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = own.sysProcAttr()
	cmd.Cancel = func() error {
		// initdb runs postgres in bootstrap mode; end the whole group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(data)
		return fmt.Errorf("running initdb: %w: %s", err, strings.TrimSpace(out.String()))
	}
	_ = os.Remove(pwfile)
	if _, err := writeHBA(data, hbaContent(nil)); err != nil {
		_ = os.RemoveAll(data)
		return err
	}
	return nil
}

// removeUnfinished removes the data dirs and password files of initdb runs
// that never finished. A data dir whose initdb a killed control plane left
// running may not go at once (it still writes); it is left for a later
// start, since every initdb has a directory of its own.
func removeUnfinished(cfg Config, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // dir is created by initdb's caller; nothing to remove
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".pwfile.") {
			_ = os.Remove(filepath.Join(dir, e.Name())) // an interrupted initdb's password
			continue
		}
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

// writePwfile writes password into a new 0600 file in dir that only the
// server's OS user (and root) may read, for initdb --pwfile.
func writePwfile(dir string, own owner, password string) (string, error) {
	f, err := os.CreateTemp(dir, ".pwfile.*")
	if err != nil {
		return "", fmt.Errorf("writing the superuser password for initdb: %w", err)
	}
	path := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		err = own.chown(path)
	}
	if err == nil {
		_, err = f.WriteString(password + "\n")
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("writing the superuser password for initdb: %w", err)
	}
	return path, nil
}
