package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// controlPlane is "runway serve" running as a process of its own.
type controlPlane struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProcess writes the config file (fixing the API and gateway
// addresses, so they stay the same across restarts) and starts "runway
// serve" with it, then waits until its API answers.
func (h *Harness) startProcess(ctx context.Context) error {
	path := h.configPath()
	if h.apiAddr == "" {
		var err error
		if h.cfg.Listen, err = freeAddr(); err != nil {
			return err
		}
		if h.cfg.Gateway.Listen, err = freeAddr(); err != nil {
			return err
		}
		h.apiAddr, h.gwAddr = h.cfg.Listen, h.cfg.Gateway.Listen
		if err := h.writeConfig(); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the runway binary: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(h.Dir, "runway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the server log: %w", err)
	}
	cmd := exec.Command(exe, "serve", "-c", path)
	cmd.Stdout = io.MultiWriter(logf, h.logw)
	cmd.Stderr = cmd.Stdout
	// If the test process dies, so does the control plane (the data plane
	// it leaves is what a real crash leaves too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting runway serve: %w", err)
	}
	cp := &controlPlane{cmd: cmd, done: make(chan error, 1), log: logf}
	go func() {
		cp.done <- cmd.Wait()
		logf.Close()
	}()
	h.proc = cp
	return h.waitAPI(ctx, cp)
}

func (h *Harness) configPath() string { return filepath.Join(h.Dir, "runway.yaml") }

func (h *Harness) writeConfig() error {
	data, err := yaml.Marshal(h.cfg)
	if err != nil {
		return fmt.Errorf("writing the server config: %w", err)
	}
	if err := os.WriteFile(h.configPath(), data, 0o600); err != nil {
		return fmt.Errorf("writing the server config: %w", err)
	}
	return nil
}

// waitAPI waits until the control plane's API answers, for at most two
// minutes.
func (h *Harness) waitAPI(ctx context.Context, cp *controlPlane) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.APIURL()+"/api/v1/environments", nil)
		if err != nil {
			return err
		}
		h.Authorize(req)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-cp.done:
			cp.done <- err
			return fmt.Errorf("runway serve exited before its API answered: %v (log in %s)", err, filepath.Join(h.Dir, "runway.log"))
		case <-ctx.Done():
			return fmt.Errorf("runway serve's API did not answer: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill kills the control plane process with SIGKILL, as a crash would, and
// waits until it is gone; the data plane keeps running.
func (h *Harness) Kill() error {
	if h.proc == nil {
		return errors.New("kill: the control plane does not run as a process")
	}
	if err := h.proc.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing runway serve: %w", err)
	}
	err := <-h.proc.done
	h.proc.done <- err
	return nil
}

// Terminate stops the control plane process with SIGTERM, as a service
// manager would, and waits until it exits (at most two minutes); it
// returns how long that took. An exit status other than 0 is an error.
// With the server's default config the data plane keeps running, for
// Respawn to adopt.
func (h *Harness) Terminate() (time.Duration, error) {
	if h.proc == nil {
		return 0, errors.New("terminate: the control plane does not run as a process")
	}
	start := time.Now()
	if err := h.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("terminating runway serve: %w", err)
	}
	select {
	case err := <-h.proc.done:
		h.proc.done <- err
		if err != nil {
			return time.Since(start), fmt.Errorf("runway serve exited after SIGTERM with %w", err)
		}
		return time.Since(start), nil
	case <-time.After(2 * time.Minute):
		_ = h.proc.cmd.Process.Kill()
		err := <-h.proc.done
		h.proc.done <- err
		return time.Since(start), errors.New("runway serve did not exit within 2m of SIGTERM; killed")
	}
}

// Respawn starts the control plane process again after Kill or Terminate;
// it adopts what the stopped one left running.
func (h *Harness) Respawn(ctx context.Context) error {
	if h.proc == nil {
		return errors.New("respawn: the control plane does not run as a process")
	}
	select {
	case err := <-h.proc.done:
		h.proc.done <- err
	default:
		return errors.New("respawn: the control plane still runs")
	}
	return h.startProcess(ctx)
}

// stopProcess stops the control plane with SIGTERM, configured to stop the
// data plane too, or SIGKILL after two minutes. A control plane that was
// killed, or that would leave its data plane running on exit (Tune may
// configure that), is first replaced by one that stops it.
func (h *Harness) stopProcess() error {
	cp := h.proc
	running := true
	select {
	case err := <-cp.done:
		cp.done <- err
		running = false
	default:
	}
	if running && !h.cfg.StopDataPlaneOnExit {
		if err := h.Kill(); err != nil {
			return err
		}
		running = false
	}
	if !running {
		h.cfg.StopDataPlaneOnExit = true
		if err := h.writeConfig(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := h.startProcess(ctx); err != nil {
			return fmt.Errorf("restarting the control plane to stop its data plane: %w", err)
		}
		cp = h.proc
	}
	if err := cp.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping runway serve: %w", err)
	}
	select {
	case err := <-cp.done:
		cp.done <- err
		if err != nil {
			return fmt.Errorf("runway serve exited with %w", err)
		}
		return nil
	case <-time.After(2 * time.Minute):
		_ = cp.cmd.Process.Kill()
		<-cp.done
		return errors.New("runway serve did not stop within 2m of SIGTERM; killed")
	}
}
