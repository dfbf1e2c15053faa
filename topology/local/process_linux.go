package local

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// sysProcAttr puts each child in its own process group and sets Pdeathsig,
// so that Linux sends it SIGKILL when the thread that started it dies.
//
// The own group keeps a Ctrl-C in the terminal, which reaches the whole
// foreground group, away from the children: the suite decides when they
// stop, and Close kills each group. Pdeathsig covers a crash of the suite
// itself (a panic, SIGKILL, a signal it does not handle): the kernel kills
// every child, paused or not, when the suite's process ends.
//
// NOTE: Pdeathsig fires when the starting OS thread ends, not the
// process. The Go runtime ends a thread only when a goroutine locked to it
// with runtime.LockOSThread exits, which this package never does, but
// other code in the same process could.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// awaitStopped waits until /proc reports pid as stopped, because SIGSTOP
// is delivered asynchronously and a pause should be in effect when Pause
// returns.
func awaitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		state, err := procState(pid)
		if err != nil {
			return err
		}
		switch state {
		case 'T':
			return nil
		case 'Z', 'X':
			return fmt.Errorf("pid %d exited instead of stopping", pid)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d is not stopped %s after SIGSTOP (state %c)", pid, timeout, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procState returns the state letter of pid from /proc/<pid>/stat, such
// as R (running), S (sleeping) or T (stopped).
func procState(pid int) (byte, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read the state of pid %d: %w", pid, err)
	}

	// The command name in brackets may contain spaces, so the state is
	// found after its closing bracket: "pid (comm) S ...".
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, fmt.Errorf("read the state of pid %d: unexpected /proc stat line %q", pid, data)
	}
	return data[i+2], nil
}
