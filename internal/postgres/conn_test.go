package postgres

import (
	"net/url"
	"slices"
	"testing"
)

func TestConnURLAndEnv(t *testing.T) {
	tests := []struct {
		name    string
		conn    Conn
		wantURL string
	}{
		{
			name:    "plain",
			conn:    Conn{Host: "127.0.0.1", Port: 5433, User: "app", Password: "secret", Database: "app_db"},
			wantURL: "postgres://app:secret@127.0.0.1:5433/app_db?sslmode=disable",
		},
		{
			name:    "password needing escapes",
			conn:    Conn{Host: "127.0.0.1", Port: 6000, User: "app", Password: "p@ss:w/rd?#%", Database: "db"},
			wantURL: "postgres://app:p%40ss%3Aw%2Frd%3F%23%25@127.0.0.1:6000/db?sslmode=disable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.conn.URL()
			if got != tt.wantURL {
				t.Fatalf("URL() = %s, want %s", got, tt.wantURL)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatalf("parsing URL: %v", err)
			}
			if pw, _ := u.User.Password(); pw != tt.conn.Password {
				t.Fatalf("password round trip = %q, want %q", pw, tt.conn.Password)
			}
			env := tt.conn.Env()
			for _, kv := range []string{
				"PGHOST=" + tt.conn.Host,
				"PGUSER=" + tt.conn.User,
				"PGPASSWORD=" + tt.conn.Password,
				"PGDATABASE=" + tt.conn.Database,
				"DATABASE_URL=" + tt.wantURL,
			} {
				if !slices.Contains(env, kv) {
					t.Fatalf("Env() = %q, missing %q", env, kv)
				}
			}
		})
	}
}
