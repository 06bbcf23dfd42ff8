package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// BackendPolicy says which addresses routes may send traffic to. A backend
// must be an IP:port (no host names: what a name resolves to can change
// after the check) on loopback (127.0.0.0/8, ::1) or inside one of the
// Allowed CIDRs, and must not be one of the Reserved addresses.
//
// The policy is what stops a control plane that was fooled, or a local
// process that reached the admin API, from sending production traffic to an
// arbitrary listener, and stops a route that loops back into the gateway or
// exposes Runway's API through it.
type BackendPolicy struct {
	// Allowed are CIDRs, e.g. "10.0.0.0/8", that backends may be in besides
	// loopback.
	Allowed []string `json:"allowed"`
	// Reserved are host:port addresses no backend may have: Runway's API.
	// An empty or unspecified host (":8080", "0.0.0.0:8080", "[::]:8080")
	// reserves the port on every address of this machine.
	Reserved []string `json:"reserved"`
}

// backendPolicy is a BackendPolicy parsed.
type backendPolicy struct {
	src      BackendPolicy
	allowed  []netip.Prefix
	reserved []netip.AddrPort
}

// parseBackendPolicy parses p; self, if not empty, is the gateway's own
// traffic address, reserved whatever p says.
func parseBackendPolicy(p BackendPolicy, self string) (*backendPolicy, error) {
	bp := &backendPolicy{src: BackendPolicy{Allowed: slices.Clone(p.Allowed), Reserved: slices.Clone(p.Reserved)}}
	for _, c := range p.Allowed {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("allowed backend CIDR %q: %w", c, err)
		}
		bp.allowed = append(bp.allowed, pfx.Masked())
	}
	reserved := slices.Clone(p.Reserved)
	if self != "" {
		reserved = append(reserved, self)
	}
	for _, r := range reserved {
		ap, err := parseReserved(r)
		if err != nil {
			return nil, err
		}
		bp.reserved = append(bp.reserved, ap)
	}
	return bp, nil
}

// ParseBackendPolicy checks that p can be used: every Allowed entry a CIDR
// and every Reserved entry an IP:port or :port.
func ParseBackendPolicy(p BackendPolicy) error {
	_, err := parseBackendPolicy(p, "")
	return err
}

func parseReserved(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reserved address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("reserved address %q: port not in 1..65535", addr)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("reserved address %q: want an IP address: %w", addr, err)
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(n)), nil
}

// parseBackendAddr parses a backend address, which must be IP:port with a
// port in 1..65535.
func parseBackendAddr(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: backend address %q: want IP:port: %w", ErrInvalidRoute, addr, err)
	}
	if host == "" {
		return netip.AddrPort{}, fmt.Errorf("%w: backend address %q has no host", ErrInvalidRoute, addr)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: backend address %q: host %q is not an IP address (host names are not accepted)", ErrInvalidRoute, addr, host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: backend address %q: port %q not in 1..65535", ErrInvalidRoute, addr, port)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(n)), nil
}

// check tells whether the backend at addr may receive traffic.
func (p *backendPolicy) check(addr string) error {
	ap, err := parseBackendAddr(addr)
	if err != nil {
		return err
	}
	ip := ap.Addr()
	if ip.IsUnspecified() {
		return fmt.Errorf("%w: backend address %q: unspecified address", ErrInvalidRoute, addr)
	}
	if !ip.IsLoopback() && !slices.ContainsFunc(p.allowed, func(pfx netip.Prefix) bool { return pfx.Contains(ip) }) {
		return fmt.Errorf("%w: backend %s is neither on loopback nor in an allowed CIDR (gateway.allowedBackends: %s)",
			ErrInvalidRoute, addr, p.allowedString())
	}
	for _, r := range p.reserved {
		if r.Port() != ap.Port() {
			continue
		}
		if r.Addr() == ip || r.Addr().IsUnspecified() && isLocal(ip) {
			return fmt.Errorf("%w: backend %s is the gateway's own listen address or Runway's API (%s): the route would loop",
				ErrInvalidRoute, addr, r)
		}
	}
	return nil
}

// checkRoute checks every backend of r.
func (p *backendPolicy) checkRoute(r Route) error {
	for _, b := range append(slices.Clone(r.Stable), r.Canary...) {
		if err := p.check(b.Addr); err != nil {
			return err
		}
	}
	return nil
}

func (p *backendPolicy) allowedString() string {
	if len(p.allowed) == 0 {
		return "none"
	}
	s := make([]string, len(p.allowed))
	for i, a := range p.allowed {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// isLocal reports whether ip is an address of this machine, which a
// listener on the unspecified address also answers on.
func isLocal(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		// Cannot tell: treat it as local, refusing rather than looping.
		return true
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if local, ok := netip.AddrFromSlice(n.IP); ok && local.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
