package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// MaxSocketPath is the longest unix socket path: sun_path is 108 bytes
// including the terminating NUL.
const MaxSocketPath = 107

// listenAdmin listens on the unix socket path for the admin API. The socket
// is 0600 and its directory, created if missing, 0700: only the gateway's
// own user (and root) can connect. A socket file left by a gateway that was
// killed is replaced; one that a live process answers on is an error.
func listenAdmin(path string) (net.Listener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("admin socket %s: path longer than %d bytes", path, MaxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating admin socket dir: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// The socket is created with the umask's mode; no other user may
	// connect in the moment before the chmod below. Nothing else in this
	// process creates files meanwhile.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restricting admin socket: %w", err)
	}
	return ln, nil
}

// removeStaleSocket removes the socket file at path if nothing answers on
// it.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking admin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: another process answers on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale admin socket: %w", err)
	}
	return nil
}
