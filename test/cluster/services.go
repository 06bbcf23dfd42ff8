package cluster

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/internal/postgres"
)

// The services a cluster test needs besides the control plane, all real
// and all on loopback: an OCI registry, a Prometheus server and the
// "existing" PostgreSQL server the Kubernetes runtime puts each
// environment's databases on.

// Registry starts go-containerregistry's in-process registry on a
// loopback port (plain HTTP), closed when t ends, and returns its
// host:port.
func Registry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(stdlog.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Prometheus runs Debian's prometheus scraping target (host:port) every
// second as job, on a free loopback port, stopped when t ends, and
// returns its URL once it has scraped the target. Without the binary the
// test is skipped, or fails under CI=true (CI installs it).
func Prometheus(t testing.TB, job, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus binary not installed (Debian package prometheus)")
		}
		t.Skip("prometheus binary not installed (Debian package prometheus)")
	}
	dir := t.TempDir()
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: %q\n  static_configs:\n  - targets: [%q]\n", job, target)
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+configPath, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+listen)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("prometheus log (tail):\n%s", tail(logPath, 30))
		}
	})
	address := "http://" + listen
	query := address + "/api/v1/query?query=" + url.QueryEscape(fmt.Sprintf(`up{job=%q}`, job))
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := httpGet(query)
		if err == nil && strings.Contains(body, `"1"]`) {
			return address
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not scrape %s within 60s: %v %s", target, err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// PostgresAdmin starts the "existing" PostgreSQL server the Kubernetes
// runtime's databases live on, stopped and removed when t ends, and
// returns its admin URL. package postgres starts it (as an unprivileged
// user when this runs as root); its pg_hba.conf, which admits the
// superuser over a private socket only, is then replaced by a shared
// server's: every role by password over loopback TCP, the superuser too.
func PostgresAdmin(t testing.TB) string {
	t.Helper()
	base, err := os.MkdirTemp("", "rw-k8s-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	secrets := filepath.Join(base, "secrets")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := postgres.Start(ctx, postgres.Config{SecretsDir: secrets}, filepath.Join(base, "server"))
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := inst.Remove(ctx); err != nil {
			t.Errorf("removing PostgreSQL: %v", err)
		}
	})
	password, err := os.ReadFile(filepath.Join(secrets, "runway.password"))
	if err != nil {
		t.Fatalf("reading the superuser's password: %v", err)
	}
	hba := filepath.Join(inst.Dir(), "data", "pg_hba.conf")
	fi, err := os.Stat(hba)
	if err != nil {
		t.Fatal(err)
	}
	content := "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(content), 0o600); err != nil {
		t.Fatalf("writing pg_hba.conf: %v", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Chown(hba, int(st.Uid), int(st.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(inst.PID(), syscall.SIGHUP); err != nil {
		t.Fatalf("reloading PostgreSQL's configuration: %v", err)
	}
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword("runway", strings.TrimSpace(string(password))),
		Host: net.JoinHostPort(inst.Host(), fmt.Sprint(inst.Port())), Path: "/postgres", RawQuery: "sslmode=disable",
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, u.String())
		if err == nil {
			_ = conn.Close(ctx)
			return u.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL does not admit its superuser over TCP after the reload: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PostgresMissing says why PostgreSQL cannot be started here ("" if it
// can): its binaries are found with pg_config --bindir.
func PostgresMissing() string {
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		return "PostgreSQL binaries missing: pg_config --bindir: " + err.Error()
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(out)), "postgres")); err != nil {
		return "PostgreSQL binaries missing: " + err.Error()
	}
	return ""
}

func httpGet(u string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return string(b), err
}
