package procfs

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Listener is a TCP socket in the LISTEN state, as /proc/net/tcp and
// /proc/net/tcp6 show it.
type Listener struct {
	Addr netip.AddrPort
	// UID is the effective uid of the process that created the socket.
	UID   uint32
	Inode uint64
}

// tcpListen is the kernel's TCP_LISTEN in the st column.
const tcpListen = "0A"

// Listeners lists the TCP listeners of this process's network namespace,
// IPv4 and IPv6. A kernel without IPv6 has no /proc/net/tcp6; that is not
// an error.
func Listeners() ([]Listener, error) {
	var all []Listener
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) && path == "/proc/net/tcp6" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing TCP listeners: %w", err)
		}
		ls, err := ParseListeners(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		all = append(all, ls...)
	}
	return all, nil
}

// ParseListeners returns the LISTEN sockets of a /proc/net/tcp or
// /proc/net/tcp6 table; other states are skipped. Each line is
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//
// where local_address is the address as the kernel holds it (network
// byte order), printed as 32-bit words in the host's byte order, and the
// port is in hex.
func ParseListeners(r io.Reader) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if n == 1 && len(f) > 0 && f[0] == "sl" {
			continue // the header
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10", n, len(f))
		}
		if f[3] != tcpListen {
			continue
		}
		addr, err := parseSocketAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address %q: %w", n, f[1], err)
		}
		uid, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: uid: %w", n, err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode: %w", n, err)
		}
		out = append(out, Listener{Addr: addr, UID: uint32(uid), Inode: inode})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseSocketAddr parses "0100007F:1F90" (8 hex digits, IPv4) or 32 hex
// digits (IPv6) before the colon.
func parseSocketAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok || len(port) != 4 {
		return netip.AddrPort{}, errors.New("want hexaddr:hexport")
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, errors.New("want 8 or 32 hex digits of address")
	}
	// Each word was printed as a host-order integer: undo that.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(p)), nil
}
