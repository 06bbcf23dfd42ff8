package nodeagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// threshold turns single probe outcomes into a probe's result as the
// kubelet does: the result flips to success after successThreshold
// successes in a row and to failure after failureThreshold failures in
// a row.
type threshold struct {
	successes, failures int32 // thresholds, at least 1
	result              bool
	run                 int32 // outcomes in a row opposite to result
}

// newThreshold starts at initial: false for readiness and startup
// (not ready, not started), true for liveness (alive until shown dead).
func newThreshold(p *corev1.Probe, initial bool) *threshold {
	return &threshold{successes: max(p.SuccessThreshold, 1), failures: max(p.FailureThreshold, 1), result: initial}
}

// observe records one outcome and reports the result and whether it
// changed.
func (t *threshold) observe(ok bool) (result, changed bool) {
	if ok == t.result {
		t.run = 0
		return t.result, false
	}
	t.run++
	need := t.failures
	if ok {
		need = t.successes
	}
	if t.run < need {
		return t.result, false
	}
	t.result, t.run = ok, 0
	return t.result, true
}

// probeTiming is a probe's schedule with Kubernetes' defaults for the
// fields the API server left zero.
type probeTiming struct {
	initialDelay, period, timeout time.Duration
}

func timingOf(p *corev1.Probe) probeTiming {
	sec := func(v, def int32) time.Duration {
		if v <= 0 {
			v = def
		}
		return time.Duration(v) * time.Second
	}
	return probeTiming{
		initialDelay: time.Duration(max(p.InitialDelaySeconds, 0)) * time.Second,
		period:       sec(p.PeriodSeconds, 10),
		timeout:      sec(p.TimeoutSeconds, 1),
	}
}

// probeTarget is what a probe attempt needs of its container.
type probeTarget struct {
	podIP     string
	container *corev1.Container
	// exec runs an exec probe's command in the container's context.
	exec func(ctx context.Context, command []string) error
}

var errProbeUnsupported = errors.New("probe handler not supported by the simulated node")

// probeOnce makes one attempt of p within its timeout: nil is success.
func probeOnce(ctx context.Context, p *corev1.Probe, t probeTarget) error {
	ctx, cancel := context.WithTimeout(ctx, timingOf(p).timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		return probeHTTP(ctx, p.HTTPGet, t)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.container)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.podIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("dialing: %w", err)
		}
		return conn.Close()
	case p.Exec != nil:
		if t.exec == nil {
			return errProbeUnsupported
		}
		return t.exec(ctx, p.Exec.Command)
	}
	return errProbeUnsupported
}

// probeClient does not reuse connections (each probe is a fresh one, as
// the kubelet's) and does not verify HTTPS certificates (nor does the
// kubelet).
var probeClient = &http.Client{
	Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet
		Proxy:             nil,
	},
}

func probeHTTP(ctx context.Context, g *corev1.HTTPGetAction, t probeTarget) error {
	port, err := resolvePort(g.Port, t.container)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = t.podIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	u, err = u.Parse(path)
	if err != nil {
		return fmt.Errorf("probe path %q: %w", g.Path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("probe request: %w", err)
	}
	req.Header.Set("User-Agent", "kube-probe/sim")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe GET %s: %w", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("probe GET %s: HTTP probe failed with statuscode: %d", u, resp.StatusCode)
	}
	return nil
}

// resolvePort is a probe's port: a number, or the name of one of the
// container's ports.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid probe port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return resolvePort(intstr.FromInt32(int32(n)), c)
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("probe port %q: no container port has that name", p.StrVal)
}
