package postgres

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestEnsureDatabaseRejectsNames(t *testing.T) {
	tests := []struct {
		name     string
		database string
		user     string
		wantName bool // want ErrInvalidName
	}{
		{name: "statement injection", database: "a;drop", user: "app", wantName: true},
		{name: "quote", database: `"x`, user: "app", wantName: true},
		{name: "too long", database: strings.Repeat("a", 64), user: "app", wantName: true},
		{name: "empty", database: "", user: "app", wantName: true},
		{name: "upper case", database: "App", user: "app", wantName: true},
		{name: "leading digit", database: "1app", user: "app", wantName: true},
		{name: "space", database: "a b", user: "app", wantName: true},
		{name: "unicode", database: "café", user: "app", wantName: true},
		{name: "reserved database", database: "postgres", user: "app", wantName: true},
		{name: "template database", database: "template1", user: "app", wantName: true},
		{name: "spare database", database: "runway_spare", user: "app", wantName: true},
		{name: "hostile user", database: "app", user: `app" SUPERUSER --`, wantName: true},
		{name: "superuser", database: "app", user: "runway", wantName: true},
		{name: "pg_ role", database: "app", user: "pg_monitor", wantName: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validation happens before any connection, so no server is needed.
			_, err := (&Instance{}).EnsureDatabase(t.Context(), tt.database, tt.user)
			if err == nil {
				t.Fatalf("EnsureDatabase(%q, %q) succeeded", tt.database, tt.user)
			}
			if got := errors.Is(err, ErrInvalidName); got != tt.wantName {
				t.Fatalf("errors.Is(%v, ErrInvalidName) = %v, want %v", err, got, tt.wantName)
			}
		})
	}
}

func TestValidateNameAccepts(t *testing.T) {
	tests := []struct {
		name  string
		kind  string
		value string
	}{
		{name: "simple", kind: "database", value: "homelabping"},
		{name: "underscore start", kind: "user", value: "_app"},
		{name: "digits", kind: "database", value: "app_v20240101"},
		{name: "max length", kind: "user", value: strings.Repeat("a", 63)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validateName(tt.kind, tt.value); err != nil {
				t.Fatalf("validateName(%q): %v", tt.value, err)
			}
		})
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"app", "a;drop", `"x`, "pg_x", "runway", strings.Repeat("z", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validateName("user", s) != nil {
			return
		}
		// An accepted name needs no escaping: quoting only wraps it.
		if got := (pgx.Identifier{s}).Sanitize(); got != `"`+s+`"` {
			t.Fatalf("accepted %q sanitizes to %s", s, got)
		}
	})
}

func TestQuoteLiteral(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "plain", in: "secret", want: "'secret'"},
		{name: "quote", in: "it's", want: "'it''s'"},
		{name: "backslash kept", in: `a\'b`, want: `'a\''b'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QuoteLiteral(tt.in); got != tt.want {
				t.Fatalf("QuoteLiteral(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// TestEnsureDatabaseConcurrent runs EnsureDatabase for one app from many
// sessions at once, as a restarted control plane does while the server
// still finishes the statement of its killed predecessor's session:
// PostgreSQL answers concurrent updates of one catalog row with "tuple
// concurrently updated", which must be retried, not returned.
func TestEnsureDatabaseConcurrent(t *testing.T) {
	inst := startInstance(t, filepath.Join(t.TempDir(), "env"))
	const sessions, rounds = 6, 5
	errs := make(chan error, sessions*rounds)
	var wg sync.WaitGroup
	for range sessions {
		wg.Go(func() {
			for range rounds {
				_, err := inst.EnsureDatabase(t.Context(), "shop", "shop")
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureDatabase: %v", err)
		}
	}
	c, err := inst.EnsureDatabase(t.Context(), "shop", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got := queryAsApp(t, c); got != "pong" {
		t.Fatal("the app cannot query its database after concurrent ensures")
	}
}
