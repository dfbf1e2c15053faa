// Package redistest runs a real redis-server as a child process for tests,
// on a free loopback port, with persistence off. Tests can kill, restart,
// pause and resume it to create backplane faults.
//
// The redis-server binary must be on PATH (Debian: apt-get install
// redis-server). Without it the test is skipped, unless the environment
// variable CI is "true": there a missing binary fails the test, so a CI
// run cannot pass by skipping every Redis test.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wscluster/wscluster/internal/freeport"
)

// startTimeout bounds the wait for a started redis-server to answer PING.
const startTimeout = 15 * time.Second

// startAttempts is how often Start tries a new port when redis-server
// exits at once, because another test took the free port first.
const startAttempts = 3

// Server is one redis-server child process.
type Server struct {
	t        testing.TB
	binary   string
	port     int
	args     []string
	password string
	dir      string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	output *syncBuffer
	client *redis.Client
}

// Start runs `redis-server --port <free> --bind 127.0.0.1 --save ""
// --appendonly no` followed by args and waits until it answers PING. The
// server is killed when the test ends, and its output is logged if the
// test failed. A --requirepass among args also sets the password of
// Client.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server is not on PATH; install it (Debian: apt-get install redis-server) to run the Redis tests"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true, so the test fails instead of being skipped")
		}
		t.Skip(msg)
	}
	s := &Server{t: t, binary: binary, args: args, password: flagValue(args, "--requirepass"), dir: t.TempDir()}
	t.Cleanup(s.cleanup)

	// A port that was free a moment ago can be taken by a parallel test
	// before redis-server binds it, so a start that fails gets a new port.
	for attempt := 1; ; attempt++ {
		s.port = freePort(t)
		err := s.launch()
		if err == nil {
			return s
		}
		if attempt == startAttempts {
			t.Fatalf("redis-server did not start after %d attempts: %v", attempt, err)
		}
		t.Logf("redis-server on port %d did not start, trying another port: %v", s.port, err)
	}
}

// flagValue returns the argument after name in args, or "".
func flagValue(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return port
}

// launch starts the process on s.port and waits until it answers PING. On
// failure the process is gone when launch returns.
func (s *Server) launch() error {
	flags := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	}, s.args...)
	cmd := exec.Command(s.binary, flags...)
	output := &syncBuffer{}
	cmd.Stdout = output
	cmd.Stderr = output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	s.mu.Lock()
	s.cmd, s.exited, s.output = cmd, exited, output
	s.mu.Unlock()

	if err := s.waitPing(exited); err != nil {
		s.Kill()
		return fmt.Errorf("%w; output:\n%s", err, output.String())
	}
	return nil
}

// waitPing polls PING on a fresh connection until redis-server answers or
// exits, or startTimeout passes.
func (s *Server) waitPing(exited <-chan struct{}) error {
	probe := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, DialTimeout: time.Second, MaxRetries: -1})
	defer probe.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := probe.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited before answering PING")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %s: %w", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Kill sends SIGKILL and waits until the process ended. It does nothing
// when the process already ended.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("SIGKILL to redis-server: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(startTimeout):
		s.t.Errorf("redis-server did not end within %s of SIGKILL", startTimeout)
	}
}

// Restart kills the server if it runs and starts a new one on the same
// port, with no data, and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		s.t.Fatalf("restart redis-server on port %d: %v", s.port, err)
	}
}

// Pause stops the process with SIGSTOP. Its sockets stay open but nothing
// is answered, like a wedged server, until Resume.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("send %v: redis-server is not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("send %v to redis-server: %v", sig, err)
	}
}

// Client returns a client of the server, with the --requirepass password if
// one was given. It is created on the first call and closed when the test
// ends. Because it reconnects on its own, it stays usable after Restart.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password})
	}
	return s.client
}

// cleanup resumes a paused process, kills it and logs its output if the
// test failed.
func (s *Server) cleanup() {
	s.mu.Lock()
	cmd, client, output := s.cmd, s.client, s.output
	s.mu.Unlock()
	if client != nil {
		_ = client.Close()
	}
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	s.Kill()
	if s.t.Failed() {
		s.t.Logf("output of redis-server on %s:\n%s", s.Addr(), output.String())
	}
}

// syncBuffer is a buffer that the process's output copier writes while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
