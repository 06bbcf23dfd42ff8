package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/runway-cd/runway/internal/store/sqlite"
	"github.com/runway-cd/runway/internal/store/storetest"
)

var _ storetest.Store = (*sqlite.DB)(nil)

// TestStore runs the store conformance suite against SQLite files.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) storetest.Store {
		db, err := sqlite.Open(t.Context(), filepath.Join(dir, "runway.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}
