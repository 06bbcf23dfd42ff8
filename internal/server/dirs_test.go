package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareDirs(t *testing.T) {
	tests := []struct {
		name     string
		existing os.FileMode // 0: the dirs do not exist yet
		wantLog  bool
	}{
		{name: "new dirs"},
		{name: "an old layout's open dirs are tightened", existing: 0o755, wantLog: true},
		{name: "already right"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			cfg := Config{DataDir: filepath.Join(base, "data")}
			cfg.setDefaults()
			if tt.existing != 0 {
				for _, d := range []string{cfg.DataDir, cfg.WorkDir} {
					if err := os.Mkdir(d, tt.existing); err != nil {
						t.Fatal(err)
					}
					if err := os.Chmod(d, tt.existing); err != nil {
						t.Fatal(err)
					}
				}
			}
			var logs strings.Builder
			if err := prepareDirs(cfg, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
				t.Fatal(err)
			}
			for d, want := range map[string]os.FileMode{cfg.DataDir: 0o700, cfg.WorkDir: 0o711} {
				fi, err := os.Stat(d)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want {
					t.Errorf("%s: mode %#o, want %#o", d, fi.Mode().Perm(), want)
				}
			}
			if got := strings.Contains(logs.String(), "tightened the mode of the data dir"); got != tt.wantLog {
				t.Errorf("log %q: says the data dir was tightened = %v, want %v", logs.String(), got, tt.wantLog)
			}
		})
	}
}
