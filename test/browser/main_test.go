// Package browser_test drives Runway's dashboard in a real headless
// Chromium (Debian's chromium, installed by scripts/browser-deps.sh)
// against a real Runway started by test/harness: live pipeline steps,
// the rollout page's weight and charts, the promote button, the login
// and screenshots of every page at phone and desktop width.
package browser_test

import (
	"os"
	"testing"

	"github.com/runway-cd/runway/internal/cli"
)

// TestMain lets this test binary stand in for the runway binary: the
// server under test starts its gateway process with it.
func TestMain(m *testing.M) {
	cli.RunIfInvoked()
	os.Exit(m.Run())
}
