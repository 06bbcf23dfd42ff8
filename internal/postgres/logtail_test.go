package postgres

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogTail(t *testing.T) {
	long := strings.Repeat("older line\n", 300) + "FATAL: could not bind\n"
	tests := []struct {
		name    string
		content string
		offset  int64
		want    string
	}{
		{name: "since offset", content: "old start\nnew start\n", offset: 10, want: "new start"},
		{name: "offset past the end: log replaced", content: "only\n", offset: 100, want: "only"},
		{name: "long: last lines, whole ones", content: long, offset: 0, want: strings.TrimSpace(strings.Repeat("older line\n", 184)) + "\nFATAL: could not bind"},
		{name: "nothing new", content: "old\n", offset: 4, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "postgres.log")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := logTail(path, tt.offset); got != tt.want {
				t.Fatalf("logTail = %q, want %q", got, tt.want)
			}
		})
	}
}
