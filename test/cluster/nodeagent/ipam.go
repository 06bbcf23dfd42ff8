package nodeagent

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ipPool hands out pod IPs from 127.1.0.1-127.1.255.254. An address is
// held by an exclusive flock on a file named after it in a directory all
// agents on this machine share, so agents of test binaries running at the
// same time never give two pods one address; the kernel drops a lock of
// a process that died.
type ipPool struct {
	lockDir string

	mu    sync.Mutex
	held  map[netip.Addr]*os.File
	start int // where the next search begins: spreads agents apart
}

// spread is the range of first addresses agents start from: small, so
// the lock files left behind (never removed: unlinking a lock file races
// with another agent opening it) stay few.
const spread = 1024

const poolSize = 256*256 - 2 // 127.1.0.1 .. 127.1.255.254

func newIPPool(lockDir string) (*ipPool, error) {
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return nil, fmt.Errorf("creating the pod IP lock directory: %w", err)
	}
	return &ipPool{lockDir: lockDir, held: map[netip.Addr]*os.File{}, start: rand.IntN(spread)}, nil
}

// addrAt is the i-th address of the pool.
func addrAt(i int) netip.Addr {
	n := i + 1 // skip 127.1.0.0
	return netip.AddrFrom4([4]byte{127, 1, byte(n >> 8), byte(n)})
}

var errPoolExhausted = errors.New("no free pod IP left in 127.1.0.0/16")

// allocate takes a free address.
func (p *ipPool) allocate() (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range poolSize {
		i := (p.start + k) % poolSize
		addr := addrAt(i)
		if _, ok := p.held[addr]; ok {
			continue
		}
		f, err := p.lock(addr)
		if err != nil {
			return netip.Addr{}, err
		}
		if f == nil {
			continue // another agent's
		}
		p.held[addr] = f
		p.start = i + 1
		return addr, nil
	}
	return netip.Addr{}, errPoolExhausted
}

// lock takes addr's file lock: nil without error when another holds it.
func (p *ipPool) lock(addr netip.Addr) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(p.lockDir, addr.String()), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("opening the lock of %s: %w", addr, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("locking %s: %w", addr, err)
	}
	return f, nil
}

// release gives addr back.
func (p *ipPool) release(addr netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.held[addr]; ok {
		f.Close() // drops the lock
		delete(p.held, addr)
	}
}

// close releases every address.
func (p *ipPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, f := range p.held {
		f.Close()
		delete(p.held, addr)
	}
}
