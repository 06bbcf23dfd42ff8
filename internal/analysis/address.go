package analysis

import (
	"errors"
	"fmt"
	"strings"
)

// ErrAddressNotAllowed is returned for a Prometheus address that is not in
// the server's allow-list.
var ErrAddressNotAllowed = errors.New("not one of the server's analysis.prometheusAddresses")

// Addresses is the allow-list of Prometheus servers an app's templates may
// query (the server config's analysis.prometheusAddresses). The empty
// address, Runway's embedded engine, is always allowed; any other must be
// in the list, compared exactly after dropping trailing slashes. The zero
// value allows only the embedded engine.
//
// A check never connects anywhere, so its answer cannot tell an open port
// from a closed one.
type Addresses struct {
	set map[string]bool
}

// NewAddresses returns the allow-list of list.
func NewAddresses(list []string) Addresses {
	a := Addresses{set: map[string]bool{}}
	for _, s := range list {
		if n := normalizeAddress(s); n != "" {
			a.set[n] = true
		}
	}
	return a
}

func normalizeAddress(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }

// Check returns nil for an allowed address and an error wrapping
// ErrAddressNotAllowed, naming it, for any other.
func (a Addresses) Check(address string) error {
	if address == "" || a.set[normalizeAddress(address)] {
		return nil
	}
	return fmt.Errorf("prometheus address %q is %w (empty for the embedded engine)", address, ErrAddressNotAllowed)
}

// CheckAddresses reports every metric whose provider.prometheus.address is
// not allowed, at its line. An address must be written out: one that uses
// an {{args.NAME}} is refused, since a step's arguments or Runway's own
// could change it after the build checked it.
func (t *Template) CheckAddresses(allowed Addresses) error {
	var errs []error
	for i, m := range t.Spec.Metrics {
		if m.Provider.Prometheus == nil {
			continue
		}
		p := fmt.Sprintf("spec.metrics[%d].provider.prometheus.address", i)
		addr := m.Provider.Prometheus.Address
		if hasPlaceholder(addr) {
			errs = append(errs, t.errorf(p, "%q uses an argument: write the address out so that it can be checked against analysis.prometheusAddresses", addr))
			continue
		}
		if err := allowed.Check(addr); err != nil {
			errs = append(errs, t.errorf(p, "%q is %v (empty for the embedded engine)", addr, ErrAddressNotAllowed))
		}
	}
	return errors.Join(errs...)
}
