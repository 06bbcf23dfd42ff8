// Package functest holds the postgres service's functional tests. Runway
// builds them into a test binary (go test -c) in the service's pipeline
// artifact and runs it after the migrations, against staging and then
// production, with the variables of a service's job: RUNWAY_DATABASE_APPS
// and each app's <APP>_DATABASE_URL.
package functest
