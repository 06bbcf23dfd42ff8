// Package auth protects Runway's API listener: the admin and read bearer
// tokens (generated at first start into the data dir, rotatable while the
// server runs), the browser sessions made from them, and the middleware
// that checks both along with the browser-facing protections (Host check
// against DNS rebinding, no CORS, JSON-only mutating requests or a
// session's CSRF token against CSRF).
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Role is what a token allows.
type Role int

// The roles, each allowing what the one before it does.
const (
	// None is no token or a wrong one.
	None Role = iota
	// Read allows GET and HEAD.
	Read
	// Admin allows every route.
	Admin
)

// The token names, as Rotate and Path take them.
const (
	AdminToken = "admin"
	ReadToken  = "read"
)

// MinLength is the shortest token accepted from a file (the server config
// applies the same minimum to tokens it is given).
const MinLength = 16

// Path is where the token named which lives in dataDir.
func Path(dataDir, which string) string {
	return filepath.Join(dataDir, which+".token")
}

// ReadFile returns the token stored in path, without surrounding space.
func ReadFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinLength {
		return "", fmt.Errorf("token file %s holds fewer than %d characters", path, MinLength)
	}
	return tok, nil
}

// Tokens are the admin and read tokens a server accepts. Tokens read from
// files follow the files: a token rotated while the server runs is the
// one accepted from the next request on.
type Tokens struct {
	admin, read *secret
}

// Load returns the tokens of the server whose data dir is dataDir. A
// non-empty admin or read is used as that token (from the config or the
// environment); otherwise the token is read from its file in dataDir,
// which is generated (32 random bytes, hex, 0600) when it does not exist.
// Two servers starting at once on one data dir end up with the same file.
func Load(dataDir, admin, read string) (*Tokens, error) {
	a, err := loadSecret(dataDir, AdminToken, admin)
	if err != nil {
		return nil, err
	}
	r, err := loadSecret(dataDir, ReadToken, read)
	if err != nil {
		return nil, err
	}
	return &Tokens{admin: a, read: r}, nil
}

// Role returns what token allows. Comparisons take the same time whatever
// the token.
func (t *Tokens) Role(token string) Role {
	if token == "" {
		return None
	}
	d := sha256.Sum256([]byte(token))
	// Both comparisons always run, so timing does not tell which matched.
	isAdmin := t.admin.matches(d)
	isRead := t.read.matches(d)
	switch {
	case isAdmin:
		return Admin
	case isRead:
		return Read
	}
	return None
}

// Observe calls f with every token read from a file from now on (a
// rotation included), so that it can be redacted from logs.
func (t *Tokens) Observe(f func(token string)) {
	for _, s := range []*secret{t.admin, t.read} {
		s.mu.Lock()
		s.observe = f
		s.mu.Unlock()
	}
}

// Source says where the token named which comes from: its file's path, or
// "config" for a token given in the config or the environment. Never the
// token itself.
func (t *Tokens) Source(which string) string {
	s := t.read
	if which == AdminToken {
		s = t.admin
	}
	if s.path == "" {
		return "config"
	}
	return s.path
}

// Rotate replaces the token named which ("admin", "read" or "all") in
// dataDir with a new random one, atomically, and returns the new tokens by
// name. A server reading that file accepts the new token (and no longer
// the old one) from its next request on.
func Rotate(dataDir, which string) (map[string]string, error) {
	var names []string
	switch which {
	case AdminToken, ReadToken:
		names = []string{which}
	case "all":
		names = []string{AdminToken, ReadToken}
	default:
		return nil, fmt.Errorf("token %q: want admin, read or all", which)
	}
	out := map[string]string{}
	for _, name := range names {
		tok, err := generate()
		if err != nil {
			return nil, err
		}
		path := Path(dataDir, name)
		tmp, err := writeTemp(path, tok)
		if err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
			return nil, fmt.Errorf("replacing %s: %w", path, err)
		}
		out[name] = tok
	}
	return out, nil
}

// secret is one token: fixed (given) or followed in its file.
type secret struct {
	path string // "" for a fixed token

	mu      sync.Mutex
	info    os.FileInfo // of the file digest was read from
	digest  [sha256.Size]byte
	observe func(token string)
}

func loadSecret(dataDir, which, given string) (*secret, error) {
	if given != "" {
		return &secret{digest: sha256.Sum256([]byte(given))}, nil
	}
	s := &secret{path: Path(dataDir, which)}
	if err := ensureFile(s.path); err != nil {
		return nil, err
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// matches reports whether d is the digest of the current token, re-reading
// the file first when it changed.
func (s *secret) matches(d [sha256.Size]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		// A failed re-read (the file removed, emptied, or being written by
		// hand) keeps the last token: it is never replaced by nothing.
		_ = s.reloadLocked()
	}
	return subtle.ConstantTimeCompare(s.digest[:], d[:]) == 1
}

func (s *secret) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

// reloadLocked reads the file again when it is not the one read last (a
// rotation renames a new file over it) or its size or time changed. A
// stat per request is the whole cost when nothing changed.
func (s *secret) reloadLocked() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("reading token: %w", err)
	}
	if s.info != nil && os.SameFile(fi, s.info) && fi.Size() == s.info.Size() && fi.ModTime().Equal(s.info.ModTime()) {
		return nil
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// Nobody but Runway may read a token; repair a loosened mode.
		if err := os.Chmod(s.path, 0o600); err != nil {
			return fmt.Errorf("restricting %s to 0600: %w", s.path, err)
		}
	}
	tok, err := ReadFile(s.path)
	if err != nil {
		return err
	}
	s.digest, s.info = sha256.Sum256([]byte(tok)), fi
	if s.observe != nil {
		s.observe(tok)
	}
	return nil
}

// ensureFile creates the token file when it does not exist. The new token
// is written to a temporary file first and hard-linked into place, which
// fails when the name exists: like O_EXCL, two starts never both win, and
// unlike O_EXCL nobody ever reads a file still being written.
func ensureFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tok, err := generate()
	if err != nil {
		return err
	}
	tmp, err := writeTemp(path, tok)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return nil
}

// writeTemp writes tok to a new 0600 file beside path and returns its
// name.
func writeTemp(path, tok string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", fmt.Errorf("writing token: %w", err)
	}
	_, werr := f.WriteString(tok + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("writing token: %w", err)
	}
	return f.Name(), nil
}

func generate() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generating token: %w", err)
	}
	return hex.EncodeToString(raw), nil
}
