package procfs

import (
	"syscall"
	"unsafe"
)

// WaitChildExit blocks until the child pid has exited, without reaping it
// (waitid(P_PID, pid, WEXITED|WNOWAIT)): its /proc entry stays, so its
// state and start time can still be read, and its process group signalled,
// until the caller reaps it.
func WaitChildExit(pid int) {
	const pPID = 1
	var info [128]byte // siginfo_t
	for range 1000 {   // bounded: only EINTR repeats
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
