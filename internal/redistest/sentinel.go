package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name under which the sentinels of a Failover monitor
// the primary.
const MasterName = "mymaster"

// Timings of the sentinels of a Failover, short so that a test sees a
// failover within a few seconds. Sentinel declares the primary down after
// sentinelDownAfter of silence.
const (
	sentinelDownAfter       = 500 * time.Millisecond
	sentinelFailoverTimeout = 2 * time.Second
)

// topologyTimeout bounds the start of one process and each wait of
// StartFailover for the topology to settle.
const topologyTimeout = 20 * time.Second

// Process is a redis-server or redis-sentinel child process listening on
// 127.0.0.1. It is killed when the test ends.
type Process struct {
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	output *syncBuffer
}

// lookupOrSkip returns the path of a program, or skips the test when it
// is not installed. Under CI=true it fails instead, so that a CI job
// without Redis does not pass by skipping.
func lookupOrSkip(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s is not on PATH; install it (Debian: apt-get install redis-server redis-sentinel) to run this test", name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// StartProcess runs binary with the arguments that args returns for a
// free port on 127.0.0.1, and waits until that port accepts TCP
// connections. Only a TCP connect is checked, so a TLS-only server counts
// as started too. A process that exits first is started again on another
// port, because a parallel test may have taken the free port. binary is
// looked up on PATH; a missing one skips the test, as Start describes.
func StartProcess(t testing.TB, binary string, args func(port int) []string) *Process {
	t.Helper()
	path := lookupOrSkip(t, binary)
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		p, err := launchProcess(t, path, port, args(port))
		if err == nil {
			return p
		}
		if attempt == startAttempts {
			t.Fatalf("%s did not start after %d attempts: %v", binary, attempt, err)
		}
		t.Logf("%s did not start, trying another port: %v", binary, err)
	}
}

// launchProcess starts one process that argv configures to listen on port,
// and waits until it does. On failure the process is gone when it returns.
func launchProcess(t testing.TB, path string, port int, argv []string) (*Process, error) {
	p := &Process{port: port, exited: make(chan struct{}), output: &syncBuffer{}}
	p.cmd = exec.Command(path, argv...)
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitListening(topologyTimeout); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%w; output:\n%s", err, p.Output())
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s on %s:\n%s", filepath.Base(path), p.Addr(), p.Output())
		}
	})
	return p, nil
}

// waitListening polls the port until it accepts a connection, the process
// exits or timeout passes.
func (p *Process) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", p.Addr(), 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-p.exited:
			return errors.New("the process exited before it listened")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no listener on %s after %s", p.Addr(), timeout)
		}
	}
}

// Addr returns the process's host:port on 127.0.0.1.
func (p *Process) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// Kill sends SIGKILL and waits until the process is gone. Killing an
// exited process does nothing.
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Output returns what the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.output.String() }

// Failover is a Redis primary with one replica, monitored by sentinels
// under MasterName. The sentinels declare the primary down after 500 ms of
// silence and promote the replica.
type Failover struct {
	Primary   *Server
	Replica   *Server
	Sentinels []*Process
}

// StartFailover starts a primary, a replica of it and the given number of
// sentinels with a quorum of a majority of them. It returns once the
// replica is in sync and every sentinel lists the replica and the other
// sentinels, so that killing the primary leads to a failover.
func StartFailover(t testing.TB, sentinels int) *Failover {
	t.Helper()
	if sentinels < 1 {
		t.Fatalf("StartFailover needs at least one sentinel, got %d", sentinels)
	}
	f := &Failover{}

	// The replica must be linked before the sentinels start: a sentinel
	// learns replicas from the primary's INFO, which it reads at once and
	// then only every 10 s. A diskless sync delay of 0 links the replica at
	// once, instead of after the default 5 s.
	f.Primary = Start(t, "--repl-diskless-sync-delay", "0")
	_, primaryPort, _ := net.SplitHostPort(f.Primary.Addr())
	f.Replica = Start(t, "--replicaof", "127.0.0.1", primaryPort)
	waitReplicaLinked(t, f.Replica)

	quorum := sentinels/2 + 1
	for range sentinels {
		f.Sentinels = append(f.Sentinels, startSentinel(t, primaryPort, quorum))
	}
	f.waitSentinelsSettled(t)
	return f
}

// startSentinel writes a sentinel configuration file and starts a sentinel
// on it. Sentinel rewrites that file at run time, so it lives in its own
// temporary directory.
func startSentinel(t testing.TB, primaryPort string, quorum int) *Process {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sentinel.conf")
	return StartProcess(t, "redis-sentinel", func(port int) []string {
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %s %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
`, port, dir, MasterName, primaryPort, quorum,
			MasterName, sentinelDownAfter.Milliseconds(), MasterName, sentinelFailoverTimeout.Milliseconds())
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatalf("write the sentinel configuration: %v", err)
		}
		return []string{path}
	})
}

// waitReplicaLinked waits until the replica reports its link to the
// primary up.
func waitReplicaLinked(t testing.TB, replica *Server) {
	t.Helper()
	c := replica.Client()
	pollUntil(t, "the replica to sync with the primary", func(ctx context.Context) bool {
		info, err := c.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
}

// waitSentinelsSettled waits until every sentinel lists the replica and
// all other sentinels. Sentinels find each other through hello messages
// on the primary, sent every 2 s.
func (f *Failover) waitSentinelsSettled(t testing.TB) {
	t.Helper()
	for _, s := range f.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		pollUntil(t, "sentinel "+s.Addr()+" to know the replica and the other sentinels", func(ctx context.Context) bool {
			replicas, err := c.Replicas(ctx, MasterName).Result()
			if err != nil || len(replicas) != 1 {
				return false
			}
			others, err := c.Sentinels(ctx, MasterName).Result()
			return err == nil && len(others) == len(f.Sentinels)-1
		})
		_ = c.Close()
	}
}

// SentinelAddrs returns the host:port of every sentinel.
func (f *Failover) SentinelAddrs() []string {
	addrs := make([]string, 0, len(f.Sentinels))
	for _, s := range f.Sentinels {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// MasterAddr returns the primary's host:port as the first answering
// sentinel reports it (SENTINEL get-master-addr-by-name).
func (f *Failover) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range f.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		hostPort, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		_ = c.Close()
		if err == nil && len(hostPort) == 2 {
			return net.JoinHostPort(hostPort[0], hostPort[1]), nil
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %w", s.Addr(), err))
	}
	return "", fmt.Errorf("no sentinel reported the address of %s: %w", MasterName, errors.Join(errs...))
}

// WaitForNewMaster waits until a sentinel reports a primary other than
// old and returns its address. It fails the test after timeout.
func (f *Failover) WaitForNewMaster(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addr, err := f.MasterAddr(ctx)
		cancel()
		if err == nil && addr != old {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover from %s within %s (last result %q, %v)", old, timeout, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pollUntil polls cond until it returns true, and fails the test when that
// takes longer than topologyTimeout.
func pollUntil(t testing.TB, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	deadline := time.Now().Add(topologyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := cond(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", topologyTimeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
