package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// processExitTimeout is the time the contract gives a node to exit after
// SIGTERM.
const processExitTimeout = 10 * time.Second

// buildMu makes the builds of parallel tests take turns, so that a cold
// build cache is filled once and later builds only link.
var buildMu sync.Mutex

// buildBinary builds the wscluster command into a temporary folder of the
// test and returns the binary's path.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build the node binary")
	binary := filepath.Join(t.TempDir(), "wscluster")

	buildMu.Lock()
	defer buildMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", binary, "github.com/wscluster/wscluster/cmd/wscluster")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build failed:\n%s", out)
	return binary
}

// syncBuffer is a buffer that a process's output copier writes while the
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

// processNode is a node running as a real wscluster process.
type processNode struct {
	id          string
	addr        string // HTTP host:port
	clusterAddr string
	cmd         *exec.Cmd
	output      *syncBuffer
	exited      chan struct{}
	exitErr     error
}

func (p *processNode) httpAddr() string { return p.addr }

// processArgs are the flags of one node process.
type processArgs struct {
	id          string
	clusterPort int
	peers       []string
	heartbeat   time.Duration
	peerTimeout time.Duration
}

// startProcess runs `wscluster serve` with args and waits until /healthz
// returns 200. The process is killed at the end of the test if still running,
// and its output is logged when the test fails.
func startProcess(t *testing.T, binary string, args processArgs) *processNode {
	t.Helper()
	p := &processNode{
		id:          args.id,
		addr:        loopbackAddr(freePort(t)),
		clusterAddr: loopbackAddr(args.clusterPort),
		output:      &syncBuffer{},
		exited:      make(chan struct{}),
	}
	flags := []string{"serve",
		"--listen", p.addr,
		"--node-id", args.id,
		"--engine", "mesh",
		"--cluster-listen", p.clusterAddr,
		"--cluster-advertise", p.clusterAddr,
		"--peers", strings.Join(args.peers, ","),
		"--peer-exchange=false",
		"--heartbeat-interval", args.heartbeat.String(),
		"--peer-timeout", args.peerTimeout.String(),
	}
	p.cmd = exec.Command(binary, flags...)
	p.cmd.Env = append(processEnv(), "WSCLUSTER_CLUSTER_SECRET="+testSecret)
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	require.NoError(t, p.cmd.Start())
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("output of node process %s:\n%s", p.id, p.output.String())
		}
	})

	require.Eventually(t, func() bool { return p.healthy() }, waitTimeout, pollInterval,
		"node process %s never answered /healthz; output:\n%s", args.id, p.output.String())
	return p
}

// processEnv returns the test's environment without WSCLUSTER_ variables,
// so that only the flags a test sets apply.
func processEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSCLUSTER_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *processNode) healthy() bool {
	select {
	case <-p.exited:
		return false
	default:
	}
	resp, err := http.Get("http://" + p.addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill sends SIGKILL, which gives the node no chance to tell its peers,
// and waits for the process to end. It does nothing after the process
// ended.
func (p *processNode) kill(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGKILL to node process %s: %v", p.id, err)
	}
	select {
	case <-p.exited:
	case <-time.After(waitTimeout):
		t.Errorf("node process %s did not end within %s of SIGKILL", p.id, waitTimeout)
	}
}

// terminate sends SIGTERM and requires a clean exit within the contract's
// 10 s.
func (p *processNode) terminate(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		require.NoError(t, p.exitErr, "node process %s exited with an error after SIGTERM; output:\n%s", p.id, p.output.String())
	case <-time.After(processExitTimeout):
		t.Fatalf("node process %s did not exit within %s of SIGTERM", p.id, processExitTimeout)
	}
}
