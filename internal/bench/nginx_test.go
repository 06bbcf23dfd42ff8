package bench

import (
	"strings"
	"testing"
)

func TestNginxConfigRender(t *testing.T) {
	base := NginxConfig{Dir: "/tmp/b", Listen: "127.0.0.1:61001", Workers: "auto", Keepalive: 64,
		Upstream: []WeightedBackend{{Addr: "127.0.0.1:40001", Weight: 4}, {Addr: "127.0.0.1:40002", Weight: 1}}}
	tests := []struct {
		name    string
		change  func(*NginxConfig)
		want    []string // lines the config must have, trimmed
		notWant []string
		wantErr string
	}{
		{
			name:   "weighted upstream with keepalive",
			change: func(*NginxConfig) {},
			want: []string{
				"worker_processes auto;", "pid /tmp/b/nginx.pid;", "error_log /tmp/b/error.log warn;",
				"server 127.0.0.1:40001 weight=4;", "server 127.0.0.1:40002 weight=1;", "keepalive 64;",
				"listen 127.0.0.1:61001;", "proxy_pass http://backends;", "proxy_http_version 1.1;",
				`proxy_set_header Connection "";`, "access_log off;", "proxy_temp_path /tmp/b/proxy;",
			},
			notWant: []string{"user ", "daemon"},
		},
		{
			name:   "one worker as root",
			change: func(c *NginxConfig) { c.Workers, c.User = "1", "www-data" },
			want:   []string{"worker_processes 1;", "user www-data;"},
		},
		{name: "bad workers", change: func(c *NginxConfig) { c.Workers = "two" }, wantErr: "worker_processes"},
		{name: "zero workers", change: func(c *NginxConfig) { c.Workers = "0" }, wantErr: "worker_processes"},
		{name: "zero weight", change: func(c *NginxConfig) { c.Upstream[1].Weight = 0 }, wantErr: "weight"},
		{name: "no keepalive", change: func(c *NginxConfig) { c.Keepalive = 0 }, wantErr: "keepalive"},
		{name: "no upstream", change: func(c *NginxConfig) { c.Upstream = nil }, wantErr: "required"},
		{name: "no listen", change: func(c *NginxConfig) { c.Listen = "" }, wantErr: "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.Upstream = append([]WeightedBackend(nil), base.Upstream...)
			tt.change(&c)
			b, err := c.Render()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Render: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			lines := map[string]bool{}
			for l := range strings.Lines(string(b)) {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tt.want {
				if !lines[w] {
					t.Errorf("config has no line %q:\n%s", w, b)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(string(b), nw) {
					t.Errorf("config has %q:\n%s", nw, b)
				}
			}
		})
	}
}

func TestSplitWeights(t *testing.T) {
	tests := []struct{ percent, a, b int }{{80, 4, 1}, {50, 1, 1}, {90, 9, 1}, {75, 3, 1}, {33, 33, 67}, {1, 1, 99}}
	for _, tt := range tests {
		if a, b := splitWeights(tt.percent); a != tt.a || b != tt.b {
			t.Errorf("splitWeights(%d) = %d, %d; want %d, %d", tt.percent, a, b, tt.a, tt.b)
		}
	}
}
