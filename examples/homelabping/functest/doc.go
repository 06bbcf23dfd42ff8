// Package functest holds homelabping's functional tests. Runway builds them
// into a test binary (go test -c) in the pipeline artifact and runs it
// against an environment with RUNWAY_APP_URL, the app's URL through Runway's
// gateway, and RUNWAY_GATEWAY_ADDR, the gateway's host:port.
package functest
