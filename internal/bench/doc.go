// Package bench measures Runway against the tools it must keep up with.
//
// The gateway benchmark (Gateway) starts two trivial HTTP backends on
// loopback, each its own process, and measures in one run, in alternating
// rounds, the same load against three targets: one backend directly,
// Runway's gateway as its real process ("runway gateway") with a canary
// split over both backends, and Debian's nginx with a weighted upstream of
// the same split and keep-alive connections to the backends. The load
// generator is wrk. Each round records requests per second, wrk's p50 and
// p99 latency, and the CPU time the proxy's processes (and, separately, the
// backends) used, read from /proc/<pid>/stat before and after the round.
//
// Every process the benchmark starts is stopped by its PID when it returns,
// on error and on cancellation (Ctrl-C) alike; each child also gets a
// parent-death signal, so none outlives a benchmark that is killed.
// Numbers are reported, never asserted.
package bench
