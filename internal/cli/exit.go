package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Exit codes, for scripts to branch on; docs/cli.md and `runway --help`
// list them.
const (
	ExitOK = 0
	// ExitError is any other failure.
	ExitError = 1
	// ExitUsage is a command line that is not one: an unknown command or
	// flag, a missing or extra argument, a bad flag value.
	ExitUsage = 2
	// ExitNotFound is a pipeline, environment, rollout or analysis run
	// the API does not know (404).
	ExitNotFound = 3
	// ExitUnauthorized is no token, or one the API refused (401, 403).
	ExitUnauthorized = 4
	// ExitUnreachable is an API that did not answer, or answered that it
	// cannot now (502, 503, 504).
	ExitUnreachable = 5
	// ExitConflict is an action refused in the object's state (409): a
	// cancel of an ended or promoted pipeline, a promote of a rollout that
	// is not paused.
	ExitConflict = 6
	// ExitUnsuccessful is a followed pipeline (pipelines get --wait,
	// pipelines logs -f) that ended other than Succeeded, or a watched
	// rollout that ended Degraded (aborted).
	ExitUnsuccessful = 10
	// ExitInterrupted is a command stopped by Ctrl-C or SIGTERM.
	ExitInterrupted = 130
)

// exitCodesHelp is the exit code table of `runway --help`.
const exitCodesHelp = `Exit codes:
  0    success
  1    error
  2    usage error (unknown command or flag, wrong arguments)
  3    not found (no such pipeline, environment, rollout or analysis run)
  4    unauthorized or forbidden (no token, or a refused one)
  5    the API is unreachable or unavailable
  6    conflict: the action is refused in the object's state (cancel of an
       ended pipeline, promote of a rollout that is not paused)
  10   the followed pipeline ended Failed, Cancelled or Superseded
       (pipelines get --wait, pipelines logs -f), or the watched rollout
       ended Degraded (rollout watch)
  130  interrupted`

// apiError is an answer of the API that is not a success.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// unreachableError is a request the API never answered.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return fmt.Sprintf("calling Runway: %v", e.err) }
func (e *unreachableError) Unwrap() error { return e.err }

// usageError is a command line that is not one.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// unsuccessfulError is a followed pipeline or rollout that ended badly.
type unsuccessfulError struct{ msg string }

func (e *unsuccessfulError) Error() string { return e.msg }

// exitCode is the exit code for err. parsed tells whether the command line
// was parsed and validated (cobra's own errors before that are usage
// errors).
func exitCode(err error, parsed bool) int {
	var (
		ae *apiError
		ue *unreachableError
		us *usageError
		ne *unsuccessfulError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &us) || !parsed:
		return ExitUsage
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ne):
		return ExitUnsuccessful
	case errors.As(err, &ue):
		return ExitUnreachable
	case errors.As(err, &ae):
		switch ae.status {
		case http.StatusNotFound:
			return ExitNotFound
		case http.StatusUnauthorized, http.StatusForbidden:
			return ExitUnauthorized
		case http.StatusConflict:
			return ExitConflict
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return ExitUnreachable
		}
	}
	return ExitError
}
