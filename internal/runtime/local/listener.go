package local

import (
	"fmt"
	"net/netip"
	"syscall"

	"github.com/runway-cd/runway/internal/procfs"
)

// A replica's port is picked by binding port 0 and closing it again
// (freePort); the replica binds it later. In that gap any local process
// may bind it, answer the health check and be sent the replica's traffic:
// a staging replica or job could serve production. Nothing in the port
// choice can close the gap short of handing the replica a bound socket,
// which apps would have to support, so the health check is not trusted
// alone: the socket listening on the port must also be the replica's uid
// (ownsPort), once the replica answers and again when it is adopted.
//
// The check is by uid, not by the socket's inode among the replica's open
// files. The uid is the boundary between environments; a process of the
// replica's own uid (another replica or a job of the same environment) can
// already signal, trace and read the replica, so finding the inode in the
// replica's process group would keep out no one the uid check lets in.
// And it would cost false refusals: reading another uid's /proc/<pid>/fd
// needs CAP_SYS_PTRACE, which root in a container often lacks, and a
// replica whose worker left the process group (setsid) or was handed the
// socket would hold it outside the group.

// foreignListenerError is a replica's port held by another uid.
type foreignListenerError struct {
	port         uint16
	app, version string
	index        int
	holder, want uint32
}

func (e *foreignListenerError) Error() string {
	return fmt.Sprintf("port %d of %s %s replica %d is held by uid %d, not the replica's uid %d: refusing to route to it",
		e.port, e.app, e.version, e.index, e.holder, e.want)
}

// ownsPort checks that every socket that could take a connection to
// replica index's address (127.0.0.1:port, 0.0.0.0:port, [::]:port or
// [::ffff:127.0.0.1]:port; whether [::] is IPv6-only does not show, so it
// counts) belongs to the uid of cred, and that there is one. A nil cred is
// a disabled sandbox: Runway is not root, so every replica, job and other
// local process Runway could tell apart runs as its own uid, and a uid
// check proves nothing; it is skipped.
func ownsPort(addr string, index int, app, version string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("replica %d of %s %s has address %q: %w", index, app, version, addr, err)
	}
	ls, err := procfs.Listeners()
	if err != nil {
		return fmt.Errorf("checking who holds port %d of %s %s replica %d: %w", want.Port(), app, version, index, err)
	}
	found := false
	for _, l := range ls {
		if !takes(l.Addr, want) {
			continue
		}
		if l.UID != cred.Uid {
			return &foreignListenerError{port: want.Port(), app: app, version: version, index: index, holder: l.UID, want: cred.Uid}
		}
		found = true
	}
	if !found {
		return fmt.Errorf("port %d of %s %s replica %d answered its health check, but no socket listens on it", want.Port(), app, version, index)
	}
	return nil
}

// takes reports whether a socket listening on l may be the one a
// connection to want (an IPv4 address) reaches.
func takes(l, want netip.AddrPort) bool {
	if l.Port() != want.Port() {
		return false
	}
	a := l.Addr().Unmap()
	return a == want.Addr() || a.IsUnspecified()
}
