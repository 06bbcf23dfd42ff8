package postgres

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// maxSocketPath is the longest unix socket path: sun_path is 108 bytes
// including the terminating NUL.
const maxSocketPath = 107

// socketFile is the longest name PostgreSQL gives its socket in a dir.
const socketFile = "/.s.PGSQL.65535"

// sockTempPrefix names socket dirs made under os.TempDir().
const sockTempPrefix = "runway-pg-"

// socketDir is where the server puts its unix socket.
type socketDir struct {
	path    string
	outside bool // not under the instance dir; Remove deletes it separately
	created bool // made by this Start; deleted again if Start fails
}

// prepareSocketDir returns dir/sock, or when that path is too long for a
// unix socket a short directory under os.TempDir(), reusing the one recorded
// by a previous start of the same instance. Only the server's OS user (and
// root) may enter it, which is what makes the superuser's trust
// authentication on the socket safe.
func prepareSocketDir(dir string, own owner, log *slog.Logger) (socketDir, error) {
	sock := socketDir{path: filepath.Join(dir, "sock")}
	if len(sock.path)+len(socketFile) <= maxSocketPath {
		if err := os.MkdirAll(sock.path, 0o700); err != nil {
			return sock, fmt.Errorf("creating socket dir: %w", err)
		}
		return sock, own.chown(sock.path)
	}
	sock = socketDir{path: previousSocketDir(dir), outside: true}
	if sock.path == "" {
		tmp, err := os.MkdirTemp(os.TempDir(), sockTempPrefix)
		if err != nil {
			return sock, fmt.Errorf("creating short socket dir: %w", err)
		}
		sock.path, sock.created = tmp, true
	}
	err := checkSocketDir(sock.path, own, log)
	if err != nil && sock.created {
		_ = os.RemoveAll(sock.path)
	}
	if err != nil {
		return sock, err
	}
	log.Info("postgres: instance dir too long for a unix socket, using a short socket dir", "dir", dir, "socketDir", sock.path)
	return sock, nil
}

// checkSocketDir makes a socket dir outside the instance dir usable.
func checkSocketDir(path string, own owner, log *slog.Logger) error {
	if len(path)+len(socketFile) > maxSocketPath {
		return fmt.Errorf("socket dir %s: path too long for a unix socket", path)
	}
	if err := own.chown(path); err != nil {
		return err
	}
	return own.makeReachable(path, log)
}

// previousSocketDir is the short socket dir recorded in dir/instance.json,
// if it is one of ours and still exists.
func previousSocketDir(dir string) string {
	rec, err := readRecord(dir)
	if err != nil || rec.SocketDir == "" {
		return ""
	}
	if filepath.Dir(rec.SocketDir) != filepath.Clean(os.TempDir()) ||
		!strings.HasPrefix(filepath.Base(rec.SocketDir), sockTempPrefix) {
		return ""
	}
	if fi, err := os.Stat(rec.SocketDir); err != nil || !fi.IsDir() {
		return ""
	}
	return rec.SocketDir
}
