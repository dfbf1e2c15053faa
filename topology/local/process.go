package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// StartMarker is the msg of the JSON line that the topology appends to a
// process's log before each start, so that each incarnation of a node
// can be found in its log.
const StartMarker = "local topology: starting process"

// Timings of process control.
const (
	// pollInterval is the time between two readiness probes.
	pollInterval = 50 * time.Millisecond
	// probeTimeout bounds one readiness probe.
	probeTimeout = time.Second
	// exitTimeout bounds the wait for a process to end after SIGKILL when
	// the caller's context has no deadline.
	exitTimeout = 10 * time.Second
	// stopTimeout bounds the wait for SIGSTOP to take effect.
	stopTimeout = 2 * time.Second
	// tailLines and tailBytes bound the log tail quoted in errors.
	tailLines = 20
	tailBytes = 8 << 10
)

// process is one child process of the topology, a node or redis-server.
// Each start runs the same argv, so a restarted process keeps its ports.
type process struct {
	name    string
	argv    []string
	dir     string
	logPath string
	// probe checks once whether the process serves, and returns nil when
	// it does.
	probe func(ctx context.Context) error
	log   *slog.Logger

	// mu serializes start, kill, pause, resume and stop.
	mu     sync.Mutex
	cur    *run // the latest start, nil before the first
	paused bool
	starts int
	closed bool // set by stop: the process is never started again
}

// run is one start of a process.
type run struct {
	cmd      *exec.Cmd
	pid      int
	exited   chan struct{} // closed once the process ended
	err      error         // the result of Wait, set before exited is closed
	killed   atomic.Bool   // set before a deliberate SIGKILL
	logStart int64         // offset of this start's marker in the log
}

// alive reports whether the run's process has not ended.
func (r *run) alive() bool {
	if r == nil {
		return false
	}
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// stateLocked describes the process for error messages. The caller holds p.mu.
func (p *process) stateLocked() string {
	switch {
	case p.cur == nil:
		return "never started"
	case p.cur.alive() && p.paused:
		return fmt.Sprintf("paused (pid %d)", p.cur.pid)
	case p.cur.alive():
		return fmt.Sprintf("running (pid %d)", p.cur.pid)
	case p.cur.killed.Load():
		return "killed"
	default:
		return fmt.Sprintf("exited on its own (%v)", p.cur.err)
	}
}

// start starts the process and waits until probe succeeds, for at most
// timeout. A process that does not get there is killed, and the error
// quotes the end of its log.
func (p *process) start(ctx context.Context, timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("start %s: the topology is closed", p.name)
	}
	if p.cur.alive() {
		return fmt.Errorf("start %s: it is %s; Kill it first", p.name, p.stateLocked())
	}

	r, err := p.launchLocked()
	if err != nil {
		return err
	}
	p.log.Info("process started", "pid", r.pid, "start", p.starts)

	if err := p.awaitReady(ctx, timeout, r); err != nil {
		p.killLocked(context.Background())
		return fmt.Errorf("start %s: %w; last lines of %s:\n%s", p.name, err, p.logPath, p.tail(r))
	}
	return nil
}

// launchLocked appends a start marker to the log and starts the process
// with its output appended to the log.
func (p *process) launchLocked() (*run, error) {
	logFile, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open its log: %w", p.name, err)
	}

	// The child gets its own copy of the file descriptor, so this copy is
	// closed on return in every case.
	defer logFile.Close()
	info, err := logFile.Stat()
	if err != nil {
		return nil, fmt.Errorf("start %s: stat its log: %w", p.name, err)
	}
	if err := p.writeMarker(logFile); err != nil {
		return nil, err
	}

	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.dir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	r := &run{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), logStart: info.Size()}
	p.cur, p.paused = r, false
	go p.wait(r)
	return r, nil
}

// writeMarker appends the start marker, a JSON line like those of the
// node's own log.
func (p *process) writeMarker(w io.Writer) error {
	p.starts++
	line, err := json.Marshal(struct {
		Time  string   `json:"time"`
		Level string   `json:"level"`
		Msg   string   `json:"msg"`
		Node  string   `json:"node"`
		Start int      `json:"start"`
		Argv  []string `json:"argv"`
	}{time.Now().Format(time.RFC3339Nano), "INFO", StartMarker, p.name, p.starts, p.argv})
	if err != nil {
		return fmt.Errorf("start %s: encode the start marker: %w", p.name, err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("start %s: write the start marker to %s: %w", p.name, p.logPath, err)
	}
	return nil
}

// wait reaps the process and logs an exit that no kill caused.
func (p *process) wait(r *run) {
	r.err = r.cmd.Wait()
	if !r.killed.Load() {
		p.log.Warn("process exited on its own", "pid", r.pid, "error", r.err)
	}
	close(r.exited)
}

// childEnv returns this process's environment without WSCLUSTER_
// variables, so that only the flags the topology sets configure a node.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSCLUSTER_") {
			env = append(env, kv)
		}
	}
	return env
}

// awaitReady polls probe until it succeeds, the process exits, ctx ends
// or timeout passes.
func (p *process) awaitReady(ctx context.Context, timeout time.Duration, r *run) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := p.probe(probeCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("the process exited before it served (%v)", r.err)
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for it to serve: %w", ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("it did not serve within %s (last probe: %w)", timeout, err)
		case <-time.After(pollInterval):
		}
	}
}

// kill sends SIGKILL to the process's group and waits until it ended.
func (p *process) kill(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cur.alive() {
		return fmt.Errorf("kill %s: it is %s, not running; Restart it instead", p.name, p.stateLocked())
	}
	if err := p.killLocked(ctx); err != nil {
		return err
	}
	p.log.Info("process killed", "pid", p.cur.pid, "signal", "SIGKILL")
	return nil
}

// killLocked kills the current run, if alive, and waits for it to end
// within ctx, or within exitTimeout when ctx has no deadline.
func (p *process) killLocked(ctx context.Context) error {
	r := p.cur
	if !r.alive() {
		return nil
	}
	r.killed.Store(true)

	// A process group is killed as a whole, so that nothing the process
	// forked survives it. SIGKILL also ends a stopped process.
	if err := syscall.Kill(-r.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: SIGKILL to process group %d: %w", p.name, r.pid, err)
	}
	p.paused = false
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, exitTimeout)
		defer cancel()
	}
	select {
	case <-r.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill %s: pid %d had not ended after SIGKILL: %w", p.name, r.pid, ctx.Err())
	}
}

// pause sends SIGSTOP to the process's group and waits until the process
// is stopped, where the system reports that.
func (p *process) pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cur.alive() || p.paused {
		return fmt.Errorf("pause %s: it is %s; only a running process can be paused", p.name, p.stateLocked())
	}
	if err := syscall.Kill(-p.cur.pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pause %s: SIGSTOP to process group %d: %w", p.name, p.cur.pid, err)
	}
	p.paused = true
	if err := awaitStopped(p.cur.pid, stopTimeout); err != nil {
		return fmt.Errorf("pause %s: %w", p.name, err)
	}
	p.log.Info("process paused", "pid", p.cur.pid, "signal", "SIGSTOP")
	return nil
}

// resume sends SIGCONT to a paused process's group.
func (p *process) resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cur.alive() || !p.paused {
		return fmt.Errorf("resume %s: it is %s; only a paused process can be resumed", p.name, p.stateLocked())
	}
	if err := syscall.Kill(-p.cur.pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("resume %s: SIGCONT to process group %d: %w", p.name, p.cur.pid, err)
	}
	p.paused = false
	p.log.Info("process resumed", "pid", p.cur.pid, "signal", "SIGCONT")
	return nil
}

// stop kills the process if it runs, resuming it first if it is paused,
// and keeps it from being started again.
func (p *process) stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if !p.cur.alive() {
		return nil
	}

	// SIGKILL ends a stopped process too. SIGCONT first makes sure that
	// no process of the group stays stopped if SIGKILL misses it.
	if p.paused {
		_ = syscall.Kill(-p.cur.pid, syscall.SIGCONT)
	}
	return p.killLocked(ctx)
}

// tail returns the last lines that run r wrote to the log, from its start
// marker on.
func (p *process) tail(r *run) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	from := max(r.logStart, info.Size()-tailBytes)
	data, err := io.ReadAll(io.NewSectionReader(f, from, info.Size()-from))
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
