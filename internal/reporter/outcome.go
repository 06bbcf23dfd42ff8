package reporter

import "strings"

// A store keeps a report's success and message; the Outcome travels inside
// the stored message, behind a marker no cleaned message can contain
// (oneline.Clean turns every control character into a space), so a hook's
// text can never forge an outcome and no schema change is needed. A store
// that keeps Outcome itself (Report.Outcome set on load) is taken at its
// word.
const outcomeMark = "\x1f"

// packOutcome returns rep as it is stored: its Outcome, if any, moved into
// the message.
func packOutcome(rep Report) Report {
	if rep.Outcome != "" {
		rep.Message = outcomeMark + string(rep.Outcome) + outcomeMark + rep.Message
	}
	return rep
}

// unpackOutcome undoes packOutcome on a loaded report.
func unpackOutcome(rep Report) Report {
	rest, ok := strings.CutPrefix(rep.Message, outcomeMark)
	if !ok {
		return rep
	}
	outcome, msg, ok := strings.Cut(rest, outcomeMark)
	if !ok {
		return rep
	}
	if rep.Outcome == "" {
		rep.Outcome = Outcome(outcome)
	}
	rep.Message = msg
	return rep
}
