package postgres

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/runway-cd/runway/internal/atomicfile"
)

const (
	// secretsDirMode lets only Runway's own OS user into the secrets dir.
	secretsDirMode = 0o700
	// secretFileMode lets only Runway's own OS user read a password file.
	secretFileMode = 0o600
	// passwordBytes is how much randomness a generated password holds.
	passwordBytes = 32
	// passwordSuffix ends every password file's name: <role>.password.
	passwordSuffix = ".password"
)

// passwordPath is where the password of role lives. The superuser's file
// cannot clash with an app role's: validateName refuses the superuser's
// name for apps.
func passwordPath(secretsDir, role string) string {
	return filepath.Join(secretsDir, role+passwordSuffix)
}

// ensureSecretsDir creates dir (and missing parents) for Runway's own OS
// user only, and narrows an existing one to that.
func ensureSecretsDir(dir string) error {
	if dir == "" {
		return errors.New("postgres: Config.SecretsDir is required: where the instance's passwords are kept")
	}
	if err := os.MkdirAll(dir, secretsDirMode); err != nil {
		return fmt.Errorf("creating secrets dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking secrets dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("secrets dir %s is not a directory", dir)
	}
	if fi.Mode().Perm() != secretsDirMode {
		if err := os.Chmod(dir, secretsDirMode); err != nil {
			return fmt.Errorf("restricting secrets dir %s: %w", dir, err)
		}
	}
	return nil
}

// loadOrCreatePassword returns role's password from the secrets dir,
// generating and storing a random one (0600) the first time. created says
// whether it was generated now. Callers serialise calls for one role.
func loadOrCreatePassword(secretsDir, role string) (password string, created bool, err error) {
	path := passwordPath(secretsDir, role)
	password, err = readPassword(path)
	if err == nil {
		return password, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if err := ensureSecretsDir(secretsDir); err != nil {
		return "", false, err
	}
	raw := make([]byte, passwordBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("generating the password of %s: %w", role, err)
	}
	password = hex.EncodeToString(raw)
	if err := atomicfile.Write(path, []byte(password+"\n"), secretFileMode); err != nil {
		return "", false, fmt.Errorf("storing the password of %s: %w", role, err)
	}
	return password, true, nil
}

// readPassword reads a password file, narrowing its mode to 0600 if it was
// wider. A missing file is reported as fs.ErrNotExist.
func readPassword(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("reading password file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("reading password file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("password file %s is not a regular file", path)
	}
	if fi.Mode().Perm() != secretFileMode {
		if err := f.Chmod(secretFileMode); err != nil {
			return "", fmt.Errorf("restricting password file %s: %w", path, err)
		}
	}
	b := make([]byte, 256)
	n, err := f.Read(b)
	if err != nil {
		return "", fmt.Errorf("reading password file %s: %w", path, err)
	}
	password := strings.TrimSpace(string(b[:n]))
	if password == "" || strings.ContainsAny(password, "\x00\r\n") {
		return "", fmt.Errorf("password file %s holds no usable password", path)
	}
	return password, nil
}
