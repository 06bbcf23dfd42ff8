package analysis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// IntOrString is a count or limit written either as a YAML integer or as a
// string (Kubernetes' intstr), so that it can hold "{{args.count}}".
type IntOrString string

// UnmarshalJSON accepts a JSON integer or string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = IntOrString(s)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want an integer or a string, got %s", b)
	}
	*v = IntOrString(strconv.FormatInt(n, 10))
	return nil
}

// MarshalJSON writes an integer when the value is one, else a string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if n, err := strconv.Atoi(string(v)); err == nil {
		return json.Marshal(n)
	}
	return json.Marshal(string(v))
}
