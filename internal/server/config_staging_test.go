package server

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestStagingConfig(t *testing.T) {
	base := "dataDir: /d\nstateRepo: {url: /s}\nwebhookSecret: 0123456789abcdef\n"
	tests := []struct {
		name   string
		yaml   string
		want   string // error text; "" = valid
		assert func(t *testing.T, c Config)
	}{
		{
			name: "defaults",
			assert: func(t *testing.T, c Config) {
				if c.Staging.TTL.Duration != 24*time.Hour || c.Staging.KeepOnFailure || c.Timeouts.Job.Duration != 10*time.Minute {
					t.Fatalf("staging %+v, job timeout %s", c.Staging, c.Timeouts.Job.Duration)
				}
			},
		},
		{
			name: "set",
			yaml: "staging: {ttl: 2h, keepOnFailure: true}\ntimeouts: {job: 90s}\n",
			assert: func(t *testing.T, c Config) {
				if c.Staging.TTL.Duration != 2*time.Hour || !c.Staging.KeepOnFailure || c.Timeouts.Job.Duration != 90*time.Second {
					t.Fatalf("staging %+v, job timeout %s", c.Staging, c.Timeouts.Job.Duration)
				}
			},
		},
		{name: "negative ttl", yaml: "staging: {ttl: -1h}\n", want: "staging.ttl -1h0m0s must not be negative"},
		{name: "negative job timeout", yaml: "timeouts: {job: -5m}\n", want: "timeouts.job -5m0s must not be negative"},
		{name: "ttl shorter than the deploy deadline", yaml: "staging: {ttl: 1m}\n", want: "staging.ttl 1m0s is shorter than timeouts.deploy 5m0s"},
		{name: "unknown field", yaml: "staging: {keep: true}\n", want: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := yaml.UnmarshalStrict([]byte(base+tt.yaml), &c)
			if err == nil {
				c.setDefaults()
				err = c.validate()
			}
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if tt.assert != nil {
				tt.assert(t, c)
			}
		})
	}
}
