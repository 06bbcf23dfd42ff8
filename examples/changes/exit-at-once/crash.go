package main

import (
	"fmt"
	"os"
)

// init makes this version exit as soon as it starts, every time: its
// replicas never become ready, the supervisor restarts them with a
// growing backoff, and the pipeline fails in staging with the exit status
// and the log's tail, while production keeps its version.
func init() {
	fmt.Fprintln(os.Stderr, "exit-at-once: exiting on purpose")
	os.Exit(2)
}
