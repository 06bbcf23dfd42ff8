// Package functest holds homelabping's functional tests. Runway builds them
// into a test binary (go test -c) in the pipeline artifact and runs it
// against an environment with RUNWAY_APP_URL, the app's URL in that
// environment (http://127.0.0.1:PORT, a listener of Runway's gateway that
// serves only this app of this environment).
package functest
