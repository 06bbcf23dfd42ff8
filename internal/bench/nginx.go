package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// NginxConfig is what the benchmark's nginx configuration says.
type NginxConfig struct {
	// Dir holds the pid file, the error log and the temp directories.
	Dir string
	// Listen is the loopback host:port nginx serves on.
	Listen string
	// Workers is worker_processes: "auto" (Debian's default: one per
	// core) or a number.
	Workers string
	// User, if not empty, is the user directive (needed when nginx starts
	// as root, where it otherwise runs its workers as "nobody").
	User string
	// Upstream is the weighted backends, in order.
	Upstream []WeightedBackend
	// Keepalive is the number of idle keep-alive connections to the
	// backends each worker keeps.
	Keepalive int
}

// WeightedBackend is one server line of an nginx upstream.
type WeightedBackend struct {
	Addr   string
	Weight int
}

var nginxTemplate = template.Must(template.New("nginx.conf").Parse(`# Written by runway bench gateway.
{{if .User}}user {{.User}};
{{end}}worker_processes {{.Workers}};
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path {{.Dir}}/client_body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;

    upstream backends {
{{- range .Upstream}}
        server {{.Addr}} weight={{.Weight}};
{{- end}}
        keepalive {{.Keepalive}};
    }

    server {
        listen {{.Listen}};
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`))

// Render returns the nginx.conf of c.
func (c NginxConfig) Render() ([]byte, error) {
	if c.Dir == "" || c.Listen == "" || len(c.Upstream) == 0 {
		return nil, errors.New("rendering nginx config: directory, listen address and upstream are required")
	}
	if c.Workers != "auto" {
		if n, err := strconv.Atoi(c.Workers); err != nil || n < 1 {
			return nil, fmt.Errorf("rendering nginx config: worker_processes %q: want auto or a positive number", c.Workers)
		}
	}
	for _, b := range c.Upstream {
		if b.Weight < 1 {
			return nil, fmt.Errorf("rendering nginx config: backend %s weight %d: want at least 1", b.Addr, b.Weight)
		}
	}
	if c.Keepalive < 1 {
		return nil, fmt.Errorf("rendering nginx config: keepalive %d: want at least 1", c.Keepalive)
	}
	var buf bytes.Buffer
	if err := nginxTemplate.Execute(&buf, c); err != nil {
		return nil, fmt.Errorf("rendering nginx config: %w", err)
	}
	return buf.Bytes(), nil
}

// splitWeights returns nginx weights for a percentage split, reduced by
// their greatest common divisor: 80 gives 4 and 1.
func splitWeights(percent int) (int, int) {
	a, b := percent, 100-percent
	g := gcd(a, b)
	return a / g, b / g
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// startNginx writes c's configuration into c.Dir and starts nginx in the
// foreground (daemon off), retrying with another port if Listen was taken
// meanwhile. It returns once nginx answers on c.Listen.
func startNginx(ctx context.Context, bin string, c NginxConfig, log *slog.Logger) (*process, NginxConfig, error) {
	const attempts = 5
	var lastErr error
	for range attempts {
		addr, err := freeLoopbackPort()
		if err != nil {
			return nil, c, fmt.Errorf("starting nginx: %w", err)
		}
		c.Listen = addr
		p, err := startNginxOnce(ctx, bin, c, log)
		if err == nil {
			return p, c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, c, lastErr
}

func startNginxOnce(ctx context.Context, bin string, c NginxConfig, log *slog.Logger) (*process, error) {
	conf, err := c.Render()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(c.Dir, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return nil, fmt.Errorf("writing nginx config: %w", err)
	}
	// -e: the error log nginx uses before it has read the configuration
	// (Debian's default, /var/log/nginx/error.log, may not be writable).
	argv := []string{bin, "-p", c.Dir, "-c", path, "-e", filepath.Join(c.Dir, "error.log"), "-g", "daemon off;"}
	p, err := start("nginx", argv, c.Dir, filepath.Join(c.Dir, "nginx.out"), log)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, "http://"+c.Listen+"/", "", 10*time.Second); err != nil {
		p.stop()
		b, _ := os.ReadFile(filepath.Join(c.Dir, "error.log"))
		return nil, fmt.Errorf("starting nginx on %s: %w: %s", c.Listen, err, tail(string(b), 800))
	}
	return p, nil
}

// waitHTTP polls url, with the Host header host if not empty, until it
// answers 2xx, the process exits or timeout passes.
func waitHTTP(ctx context.Context, p *process, url, host string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if p.exited() {
			return p.exitError()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", url, err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", url, ctx.Err(), last)
		case <-p.done:
		case <-tick.C:
		}
	}
}

// findNginx returns the nginx binary, installing Debian's package when it
// is missing and install is set and the benchmark runs as root.
func findNginx(ctx context.Context, install bool, log *slog.Logger) (string, error) {
	return findOrInstall(ctx, "nginx", "/usr/sbin/nginx", "nginx", install, log)
}

// findWrk is findNginx for wrk.
func findWrk(ctx context.Context, install bool, log *slog.Logger) (string, error) {
	return findOrInstall(ctx, "wrk", "/usr/bin/wrk", "wrk", install, log)
}

func findOrInstall(ctx context.Context, name, debianPath, pkg string, install bool, log *slog.Logger) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(debianPath); err == nil {
		return debianPath, nil
	}
	how := fmt.Sprintf("install it with: sudo apt-get update && sudo apt-get install -y %s", pkg)
	if !install {
		return "", fmt.Errorf("%s not found; %s", name, how)
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s not found and not running as root; %s", name, how)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%s not found and no apt-get; install %s with your package manager", name, pkg)
	}
	log.Info("installing from Debian", "package", pkg)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", pkg}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %v: %w: %s", args, err, tail(string(out), 800))
		}
	}
	if _, err := os.Stat(debianPath); err != nil {
		return "", fmt.Errorf("installed %s but %s is missing: %w", pkg, debianPath, err)
	}
	return debianPath, nil
}
