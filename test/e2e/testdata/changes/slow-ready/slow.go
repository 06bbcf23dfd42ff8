package main

import (
	"fmt"
	"os"
	"time"
)

// init makes this version slow to become ready outside production: each
// staging replica waits 20 s before it listens, so its environment stays
// "being created" long enough for a test to act meanwhile (cancel its
// pipeline, abort another app's canary). Well under the health timeout
// (60 s by default), so the environment does become ready.
func init() {
	if os.Getenv("RUNWAY_ENV") == "production" {
		return
	}
	fmt.Fprintln(os.Stderr, "slow-ready: waiting 20s before listening")
	time.Sleep(20 * time.Second)
}
