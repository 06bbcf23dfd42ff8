package server

import (
	"os"
	"testing"

	"github.com/runway-cd/runway/internal/dataplane"
)

// TestMain lets this test binary stand in for the runway binary when the
// server under test starts its gateway process.
func TestMain(m *testing.M) {
	dataplane.RunIfInvoked()
	os.Exit(m.Run())
}
