package reporter

import "fmt"

// maxName is the longest workflow or app name accepted.
const maxName = 128

// validateName accepts names made of [A-Za-z0-9._-], 1 to 128 characters,
// other than "." and "..", so a name is safe in a path, a URL and a log line.
func validateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s name", ErrInvalid, kind)
	}
	if len(name) > maxName {
		return fmt.Errorf("%w: %s name longer than %d characters", ErrInvalid, kind, maxName)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: %s name %q", ErrInvalid, kind, name)
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: %s name %q: only letters, digits, '.', '_' and '-' are allowed", ErrInvalid, kind, name)
		}
	}
	return nil
}
