package main

import (
	"fmt"
	"os"
	"time"
)

// init makes this version crash 5 s after it starts, in production only:
// staging and its functional tests pass, and only the canary's health
// can catch it. Runway's supervisor restarts it each time; the rollout
// sees the canary crash-looping and aborts.
func init() {
	if os.Getenv("RUNWAY_ENV") != "production" {
		return
	}
	go func() {
		time.Sleep(5 * time.Second)
		fmt.Fprintln(os.Stderr, "crash-in-production: exiting on purpose")
		os.Exit(3)
	}()
}
