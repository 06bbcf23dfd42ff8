package e2e

import (
	"os"
	"testing"

	"github.com/runway-cd/runway/internal/cli"
)

// TestMain lets this test binary stand in for the runway binary: the
// server under test starts its gateway process with it, and the kill test
// runs "runway serve" with it.
func TestMain(m *testing.M) {
	cli.RunIfInvoked()
	os.Exit(m.Run())
}
