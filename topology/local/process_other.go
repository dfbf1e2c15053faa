//go:build !linux

package local

import (
	"syscall"
	"time"
)

// sysProcAttr puts each child in its own process group, so that a Ctrl-C
// in the terminal reaches only the suite and Close kills each group.
//
// NOTE: without Linux's Pdeathsig, a crash of the suite leaves the
// children running; find them by the command lines of their log markers.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// awaitStopped cannot check the state without /proc, so it gives SIGSTOP
// a moment to be delivered.
func awaitStopped(int, time.Duration) error {
	time.Sleep(20 * time.Millisecond)
	return nil
}
