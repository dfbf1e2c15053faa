package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveExitTimeout is the time the contract gives a node to exit after
// SIGTERM, and the bound on every run of the binary in these tests.
const serveExitTimeout = 10 * time.Second

// serveWaitTimeout bounds every wait for a WebSocket handshake, response or
// close frame.
const serveWaitTimeout = 5 * time.Second

// serveOutput is a buffer that the process's output copier writes while
// the test reads it.
type serveOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *serveOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *serveOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildBinary builds this command into dir and returns the binary's path.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()

	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build the binary")
	binary := filepath.Join(dir, "wscluster")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", binary, ".").CombinedOutput()
	require.NoError(t, err, "go build failed:\n%s", out)
	return binary
}

// serveEnv returns the test process's environment without any WSCLUSTER_
// variable, plus extra, so that only the variables a test sets apply.
func serveEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSCLUSTER_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port that was free a
// moment ago. The binary reports no port it picked itself, so the test picks
// one, accepting the small chance that another process takes it meanwhile.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// serveResult is the outcome of a run of the binary that is expected to
// end by itself.
type serveResult struct {
	code   int
	stdout string
	stderr string
}

// runServeBinary runs `wscluster serve args...` with env and waits for it to
// exit within serveExitTimeout.
func runServeBinary(t *testing.T, binary string, env []string, args ...string) serveResult {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), serveExitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"serve"}, args...)...)
	cmd.Env = serveEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	err := cmd.Run()
	require.NoError(t, ctx.Err(), "the binary did not exit within %s; stderr:\n%s", serveExitTimeout, stderr.String())
	var exitErr *exec.ExitError
	if err != nil {
		require.ErrorAs(t, err, &exitErr, "the binary did not run")
	}
	return serveResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// serveProcess is a running `wscluster serve`.
type serveProcess struct {
	cmd  *exec.Cmd
	addr string
	// output collects stdout and stderr in the order they were written.
	output *serveOutput
	// exited is closed when the process has exited and cmd.ProcessState is set.
	exited chan struct{}
}

// startServeBinary starts `wscluster serve args...` listening on addr (the
// caller passes --listen or WSCLUSTER_LISTEN) and waits until /healthz
// returns 200. The process is killed when the test ends, if still running.
func startServeBinary(t *testing.T, binary, addr string, env []string, args ...string) *serveProcess {
	t.Helper()

	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Env = serveEnv(env...)
	p := &serveProcess{cmd: cmd, addr: addr, output: &serveOutput{}, exited: make(chan struct{})}
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})

	p.waitHealthy(t)
	return p
}

// waitHealthy polls /healthz until it returns 200, failing at once when the
// process exits first.
func (p *serveProcess) waitHealthy(t *testing.T) {
	t.Helper()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(serveExitTimeout)
	for {
		select {
		case <-p.exited:
			require.FailNow(t, "the binary exited before serving",
				"exit code %d; output:\n%s", p.cmd.ProcessState.ExitCode(), p.output)
		default:
		}
		resp, err := client.Get("http://" + p.addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "/healthz did not return 200 within %s; output:\n%s", serveExitTimeout, p.output)
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate sends SIGTERM and returns the exit code, requiring an exit
// within serveExitTimeout.
func (p *serveProcess) terminate(t *testing.T) int {
	t.Helper()

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(serveExitTimeout):
		require.FailNow(t, "the binary did not exit after SIGTERM", "waited %s; output:\n%s", serveExitTimeout, p.output)
		return -1
	}
}

// dialServe opens a WebSocket connection to the process and checks that a
// request round-trips.
func dialServe(t *testing.T, addr string) *websocket.Conn {
	t.Helper()

	dialer := websocket.Dialer{Subprotocols: []string{"wscluster.v1"}, HandshakeTimeout: serveWaitTimeout}
	ws, resp, err := dialer.Dial("ws://"+addr+"/ws", nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = ws.Close() })

	require.NoError(t, ws.SetReadDeadline(time.Now().Add(serveWaitTimeout)))
	require.NoError(t, ws.WriteMessage(websocket.TextMessage,
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"news"}}`)))
	_, reply, err := ws.ReadMessage()
	require.NoError(t, err)
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"channel":"news"}}`, string(reply))
	return ws
}

// clusterNodeID returns the node_id of the process's /cluster document.
func clusterNodeID(t *testing.T, addr string) string {
	t.Helper()

	client := &http.Client{Timeout: serveWaitTimeout}
	resp, err := client.Get("http://" + addr + "/cluster")
	require.NoError(t, err)
	defer resp.Body.Close()
	var doc struct {
		NodeID string `json:"node_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	return doc.NodeID
}

// TestServeBinary builds the binary once and runs it in every subtest.
func TestServeBinary(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the tests send SIGTERM, which Windows does not have")
	}
	binary := buildBinary(t, t.TempDir())

	t.Run("SIGTERM closes clients and exits 0", func(t *testing.T) { testServeSIGTERM(t, binary) })
	t.Run("invalid flag value exits 2", func(t *testing.T) { testServeInvalidFlag(t, binary) })
	t.Run("invalid variable exits 2", func(t *testing.T) { testServeInvalidVariable(t, binary) })
	t.Run("flag beats variable", func(t *testing.T) { testServeFlagBeatsVariable(t, binary) })
	t.Run("secrets stay out of output", func(t *testing.T) { testServeSecretsHidden(t, binary) })
	t.Run("invalid secret is redacted", func(t *testing.T) { testServeInvalidSecretRedacted(t, binary) })
	t.Run("redis engine without redis serves but is not ready", func(t *testing.T) { testServeRedisDown(t, binary) })
}

func testServeSIGTERM(t *testing.T, binary string) {
	addr := freeLoopbackAddr(t)
	p := startServeBinary(t, binary, addr, nil, "--listen", addr, "--node-id", "term-1")
	ws := dialServe(t, addr)

	// The client reads in the background, so it replies to the server's
	// close frame as a browser would.
	closeCode := make(chan int, 1)
	go func() {
		_ = ws.SetReadDeadline(time.Now().Add(serveExitTimeout))
		for {
			_, _, err := ws.ReadMessage()
			if err != nil {
				code := 0
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				closeCode <- code
				return
			}
		}
	}()

	start := time.Now()
	assert.Equal(t, 0, p.terminate(t), "output:\n%s", p.output)
	assert.Less(t, time.Since(start), serveExitTimeout)
	select {
	case code := <-closeCode:
		assert.Equal(t, websocket.CloseGoingAway, code)
	case <-time.After(serveWaitTimeout):
		require.FailNow(t, "the client saw no close")
	}

	_, err := net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "the port still accepts connections after the exit")
}

// requireOneLine checks that output is exactly one line, as the contract
// requires of a start-up error, and returns it.
func requireOneLine(t *testing.T, output string) string {
	t.Helper()

	require.True(t, strings.HasSuffix(output, "\n"), "the error does not end with a newline: %q", output)
	line := strings.TrimSuffix(output, "\n")
	require.NotEmpty(t, line)
	require.NotContains(t, line, "\n", "the error is more than one line")
	return line
}

func testServeInvalidFlag(t *testing.T, binary string) {
	cases := []struct {
		args []string
		// want lists substrings of the error line: the flag and the value.
		want []string
	}{
		{[]string{"--ping-interval", "bad"}, []string{"--ping-interval", `"bad"`}},
		{[]string{"--ping-interval=-1s"}, []string{"--ping-interval", `"-1s"`}},
		{[]string{"--max-message-bytes", "10"}, []string{"--max-message-bytes", `"10"`, "256"}},
		{[]string{"--log-level", "loud"}, []string{"--log-level", `"loud"`, "debug"}},
		{[]string{"--log-format", "xml"}, []string{"--log-format", `"xml"`, "json"}},
		{[]string{"--node-id", "has space"}, []string{"--node-id", `"has space"`}},
		{[]string{"--engine", "kafka"}, []string{"--engine", `"kafka"`, "mesh"}},
		{[]string{"--peer-exchange=maybe"}, []string{"--peer-exchange", `"maybe"`, "true"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0"}, tc.args...)
			result := runServeBinary(t, binary, nil, args...)

			assert.Equal(t, 2, result.code)
			assert.Empty(t, result.stdout)
			line := requireOneLine(t, result.stderr)
			for _, want := range tc.want {
				assert.Contains(t, line, want)
			}
		})
	}
}

func testServeInvalidVariable(t *testing.T, binary string) {
	result := runServeBinary(t, binary, []string{"WSCLUSTER_PING_INTERVAL=bad"}, "--listen", "127.0.0.1:0")

	assert.Equal(t, 2, result.code)
	line := requireOneLine(t, result.stderr)
	assert.Contains(t, line, "WSCLUSTER_PING_INTERVAL")
	assert.Contains(t, line, "--ping-interval")
	assert.Contains(t, line, `"bad"`)
}

func testServeFlagBeatsVariable(t *testing.T, binary string) {
	addr := freeLoopbackAddr(t)

	// WSCLUSTER_LISTEN has no flag to beat it, so the node serving on addr
	// proves that variables apply. The invalid WSCLUSTER_PING_INTERVAL
	// would stop the start if the flag did not win.
	env := []string{
		"WSCLUSTER_LISTEN=" + addr,
		"WSCLUSTER_NODE_ID=from-env",
		"WSCLUSTER_PING_INTERVAL=bad",
	}
	p := startServeBinary(t, binary, addr, env, "--node-id", "from-flag", "--ping-interval", "1s")

	assert.Equal(t, "from-flag", clusterNodeID(t, addr))
	assert.Equal(t, 0, p.terminate(t), "output:\n%s", p.output)
}

func testServeSecretsHidden(t *testing.T, binary string) {
	const flagSecret = "flag-secret-7f3a9c"
	const envSecret = "env-secret-b41d2e"
	addr := freeLoopbackAddr(t)

	// Debug logging with the configuration logged at start is where a
	// secret would most likely leak.
	env := []string{"WSCLUSTER_REDIS_PASSWORD=" + envSecret}
	p := startServeBinary(t, binary, addr, env,
		"--listen", addr, "--log-format", "json", "--log-level", "debug", "--cluster-secret", flagSecret)
	ws := dialServe(t, addr)
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`not json`)))
	_, _, err := ws.ReadMessage()
	require.NoError(t, err)

	// A client that completes the close handshake lets the node exit at
	// once instead of after its close grace.
	require.NoError(t, ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(serveWaitTimeout)))
	_, _, err = ws.ReadMessage()
	require.True(t, websocket.IsCloseError(err, websocket.CloseNormalClosure), "expected the echoed close, got %v", err)
	require.Equal(t, 0, p.terminate(t), "output:\n%s", p.output)

	output := p.output.String()
	assert.NotContains(t, output, flagSecret)
	assert.NotContains(t, output, envSecret)
	assert.Contains(t, output, `"cluster_secret":"[redacted]"`, "the configuration was not logged, so the check proves nothing")
	assert.Contains(t, output, `"redis_password":"[redacted]"`)
	for _, line := range strings.Split(strings.TrimSpace(output), "\n") {
		assert.True(t, json.Valid([]byte(line)), "a log line is not JSON: %s", line)
	}
}

func testServeInvalidSecretRedacted(t *testing.T, binary string) {
	const secret = "bad-secret-91e5\x01zq8tail"
	cases := map[string]struct {
		env  []string
		args []string
	}{
		"flag":     {args: []string{"--cluster-secret", secret}},
		"variable": {env: []string{"WSCLUSTER_CLUSTER_SECRET=" + secret}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			result := runServeBinary(t, binary, tc.env, append([]string{"--listen", "127.0.0.1:0"}, tc.args...)...)

			assert.Equal(t, 2, result.code)
			line := requireOneLine(t, result.stderr)
			assert.Contains(t, line, "--cluster-secret")
			assert.NotContains(t, line, "bad-secret-91e5")
			assert.NotContains(t, line, "zq8tail")
		})
	}
}

func testServeRedisDown(t *testing.T, binary string) {
	// Nothing listens on the Redis address: the node must keep serving its
	// clients, say on /readyz that its backplane is down, and stop on
	// SIGTERM as usual.
	addr := freeLoopbackAddr(t)
	p := startServeBinary(t, binary, addr, nil,
		"--listen", addr, "--engine", "redis", "--redis-addr", freeLoopbackAddr(t),
		"--heartbeat-interval", "100ms", "--peer-timeout", "300ms")

	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, 0, p.terminate(t), "output:\n%s", p.output)
}
