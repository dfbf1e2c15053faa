package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// startTimeout bounds the wait for a started server to respond.
const startTimeout = 20 * time.Second

// process is one child process of the benchmark: a server, Redis or a load
// generator.
type process struct {
	name   string
	cmd    *exec.Cmd
	output *tailBuffer
	exited chan struct{}
}

// startProcess runs argv, pinned to cpus when cpus is not empty. Standard
// output goes to stdout when it is not nil; everything else the process
// writes goes to a buffer that is shown when it fails.
func startProcess(name, cpus string, argv []string, stdin, stdout *os.File) (*process, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	out := &tailBuffer{max: 64 << 10}
	cmd.Stdout = out
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = out
	// A process group of its own lets a stop reach the whole child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	p := &process{name: name, cmd: cmd, output: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process is still running.
func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and, after grace, SIGKILL, then waits for the exit.
func (p *process) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.exited
}

// failure describes an exit, with the tail of the process's output.
func (p *process) failure() error {
	return fmt.Errorf("%s exited (%v); its last output:\n%s", p.name, p.cmd.ProcessState, p.output.String())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// cpuSeconds returns the user plus system CPU time of pid and its exited,
// waited-for threads, from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}

	// The command name in brackets may contain spaces, so the fields are
	// counted from the last closing bracket: utime and stime are fields
	// 14 and 15 of the line, the 12th and 13th after it.
	end := bytes.LastIndexByte(raw, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(raw[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// cpuBusySeconds returns the busy time of every CPU since boot, keyed by
// its number as taskset writes it, from /proc/stat. Busy is everything but
// idle and iowait.
func cpuBusySeconds() (map[string]float64, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	busy := make(map[string]float64)
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 || !strings.HasPrefix(fields[0], "cpu") || fields[0] == "cpu" {
			continue
		}
		var total, idle int64
		for i, f := range fields[1:] {
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("malformed /proc/stat line %q: %w", line, err)
			}
			total += v
			if i == 3 || i == 4 {
				idle += v
			}
		}
		busy[strings.TrimPrefix(fields[0], "cpu")] = float64(total-idle) / clockTicks
	}
	return busy, nil
}

// rssBytes returns the resident set size of pid from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("malformed VmRSS in /proc/%d/status: %w", pid, err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		listeners = append(listeners, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitHTTP polls url until check accepts the response body, the process
// exits or startTimeout passes.
func waitHTTP(ctx context.Context, p *process, url string, check func(status int, body []byte) bool) error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if !p.alive() {
			return p.failure()
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if check(resp.StatusCode, body) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s at %s not ready after %v; its last output:\n%s", p.name, url, startTimeout, p.output.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// buildStep is one go build: its folder and arguments.
type buildStep struct {
	dir  string
	args []string
}

// binaries are the programs the benchmark runs.
type binaries struct {
	wscluster, loadgen, peer string
}

// build compiles wscluster, wscluster-loadgen and, when withPeer is set,
// the peer server into dir. The peer is a module of its own, so it is built
// inside its folder.
func build(ctx context.Context, root, dir string, withPeer bool, log *slog.Logger) (binaries, error) {
	bins := binaries{
		wscluster: filepath.Join(dir, "wscluster"),
		loadgen:   filepath.Join(dir, "wscluster-loadgen"),
		peer:      filepath.Join(dir, "peer"),
	}
	steps := []buildStep{
		{root, []string{"build", "-trimpath", "-o", bins.wscluster, "./cmd/wscluster"}},
		{root, []string{"build", "-trimpath", "-o", bins.loadgen, "./cmd/wscluster-loadgen"}},
	}
	if withPeer {
		steps = append(steps, buildStep{filepath.Join(root, "bench", "peer"), []string{"build", "-trimpath", "-o", bins.peer, "."}})
	}
	for _, step := range steps {
		log.Info("building", "dir", step.dir, "args", strings.Join(step.args, " "))
		cmd := exec.CommandContext(ctx, "go", step.args...)
		cmd.Dir = step.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return binaries{}, fmt.Errorf("go %s in %s: %w\n%s", strings.Join(step.args, " "), step.dir, err, out)
		}
	}
	return bins, nil
}

// raiseFileLimit sets the soft limit of open files to the hard limit, so
// that the servers and generators started after it can hold 10,000
// connections and more.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise the open files limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}
