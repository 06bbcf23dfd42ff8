package analysis

import "errors"

// ErrRunNotFound is returned (wrapped) by a store's GetAnalysisRun for a
// run it has no record of. Callers branch on it with errors.Is; the API
// answers 404.
var ErrRunNotFound = errors.New("analysis run not found")
