package analysis

import (
	"errors"
	"strings"
	"testing"
)

func TestAddressesCheck(t *testing.T) {
	a := NewAddresses([]string{"http://prom:9090/", " https://metrics.example/prometheus ", ""})
	tests := []struct {
		address string
		ok      bool
	}{
		{"", true},
		{"http://prom:9090", true},
		{"http://prom:9090/", true},
		{"http://prom:9090//", true},
		{"https://metrics.example/prometheus", true},
		{"https://metrics.example/prometheus/", true},
		{"http://prom:9091", false},
		{"https://prom:9090", false},
		{"http://prom:9090/api", false},
		{"http://PROM:9090", false},
		{"http://127.0.0.1:9090", false},
		{"http://169.254.169.254/", false},
		{" ", false},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			err := a.Check(tt.address)
			if (err == nil) != tt.ok {
				t.Fatalf("Check(%q) = %v, want ok=%v", tt.address, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrAddressNotAllowed) {
				t.Fatalf("Check(%q) = %v: want ErrAddressNotAllowed", tt.address, err)
			}
		})
	}
	if err := (Addresses{}).Check("http://prom:9090"); err == nil {
		t.Fatal("the zero allow-list allowed a remote server")
	}
	if err := (Addresses{}).Check(""); err != nil {
		t.Fatalf("the zero allow-list refused the embedded engine: %v", err)
	}
}

func TestCheckAddresses(t *testing.T) {
	const file = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: t
spec:
  args:
  - name: where
    value: http://prom:9090
  metrics:
  - name: embedded
    provider:
      prometheus:
        query: up
  - name: allowed
    provider:
      prometheus:
        address: http://prom:9090/
        query: up
  - name: refused
    provider:
      prometheus:
        address: http://10.0.0.1:9090
        query: up
  - name: templated
    provider:
      prometheus:
        address: "{{args.where}}"
        query: up
`
	ts, err := ParseFile("analysis/t.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	err = ts[0].CheckAddresses(NewAddresses([]string{"http://prom:9090"}))
	want := strings.Join([]string{
		`analysis/t.yaml:22: spec.metrics[2].provider.prometheus.address: "http://10.0.0.1:9090" is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)`,
		`analysis/t.yaml:27: spec.metrics[3].provider.prometheus.address: "{{args.where}}" uses an argument: write the address out so that it can be checked against analysis.prometheusAddresses`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("CheckAddresses:\n%v\nwant:\n%s", err, want)
	}
}
