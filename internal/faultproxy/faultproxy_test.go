package faultproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/internal/faultproxy"
)

// waitTimeout bounds every wait for bytes or for a connection to end.
const waitTimeout = 5 * time.Second

// silence is how long a read must stay without bytes to count as blocked.
const silence = 300 * time.Millisecond

// echoServer is a TCP server that writes back every byte it reads and
// passes a half-close on.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			_, _ = io.Copy(conn, conn)
			_ = conn.(*net.TCPConn).CloseWrite()
		}()
	}
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func startProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New("127.0.0.1:0", target)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn.(*net.TCPConn)
}

// roundTrip writes msg and reads it back within waitTimeout.
func roundTrip(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	_, err := conn.Write([]byte(msg))
	require.NoError(t, err)
	require.Equal(t, msg, readN(t, conn, len(msg)))
}

func readN(t *testing.T, conn net.Conn, n int) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	buf := make([]byte, n)
	_, err := io.ReadFull(conn, buf)
	require.NoError(t, err)
	return string(buf)
}

// requireSilent checks that no byte arrives on conn for the silence time
// and that the connection is still open.
func requireSilent(t *testing.T, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(silence)))
	n, err := conn.Read(make([]byte, 64))
	require.Zero(t, n, "bytes crossed a blackholed proxy")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the connection ended instead of staying open")
}

// requireEnded checks that conn ends, by end of stream or reset, within
// waitTimeout.
func requireEnded(t *testing.T, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	_, err := io.Copy(io.Discard, conn)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the connection stayed open: %v", err)
}

// requireRejected checks that a connection to addr ends at once. The proxy
// may reset it before the client's connect returns, which is a rejection
// too.
func requireRejected(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		require.ErrorIs(t, err, syscall.ECONNRESET)
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("x"))
	requireEnded(t, conn)
}

func TestProxyForwardsBothWays(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	assert.Equal(t, echo.addr(), p.Target())

	conn := dial(t, p.Addr())
	roundTrip(t, conn, "hello")

	// A stream larger than the proxy's buffers must cross intact, which
	// needs a concurrent reader because the echo pushes back.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	written := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		written <- err
	}()
	require.Equal(t, string(payload), readN(t, conn, len(payload)))
	require.NoError(t, <-written)
	assert.Equal(t, 1, p.ConnCount())
}

func TestProxyPassesHalfClose(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())

	conn := dial(t, p.Addr())
	_, err := conn.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, conn.CloseWrite())

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	got, err := io.ReadAll(conn)
	require.NoError(t, err, "the echo's end of stream should arrive as EOF")
	assert.Equal(t, "last words", string(got))
	require.Eventually(t, func() bool { return p.ConnCount() == 0 }, waitTimeout, 10*time.Millisecond)
}

func TestProxyCutDropsAndRejects(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	conn := dial(t, p.Addr())
	roundTrip(t, conn, "before")

	p.Cut()
	requireEnded(t, conn)
	assert.Zero(t, p.ConnCount())

	// New connections are accepted and closed at once, and never reach
	// the target.
	acceptedBefore := echo.accepted.Load()
	requireRejected(t, p.Addr())
	assert.Equal(t, acceptedBefore, echo.accepted.Load())

	p.Heal()
	roundTrip(t, dial(t, p.Addr()), "after heal")
}

func TestProxyBlackholeHoldsBytes(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	open := dial(t, p.Addr())
	roundTrip(t, open, "before")

	p.Blackhole()
	_, err := open.Write([]byte("held"))
	require.NoError(t, err)
	requireSilent(t, open)

	// A connection made during the blackhole is accepted but the target
	// is not dialed until Heal.
	acceptedBefore := echo.accepted.Load()
	late := dial(t, p.Addr())
	_, err = late.Write([]byte("late"))
	require.NoError(t, err)
	requireSilent(t, late)
	assert.Equal(t, acceptedBefore, echo.accepted.Load())
	assert.Equal(t, 2, p.ConnCount())

	// After Heal, the held bytes arrive on both connections, as TCP
	// retransmission would deliver them.
	p.Heal()
	assert.Equal(t, "held", readN(t, open, 4))
	assert.Equal(t, "late", readN(t, late, 4))
	roundTrip(t, open, "after heal")
}

func TestProxyHealAfterBlackholeAndCut(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())

	// Every order of the switches must end in a forwarding proxy.
	p.Blackhole()
	p.Cut()
	requireRejected(t, p.Addr())
	p.Heal()
	roundTrip(t, dial(t, p.Addr()), "after blackhole and cut")

	p.Cut()
	p.Blackhole()
	late := dial(t, p.Addr())
	_, err := late.Write([]byte("held"))
	require.NoError(t, err)
	requireSilent(t, late)
	p.Heal()
	assert.Equal(t, "held", readN(t, late, 4))

	p.Blackhole()
	p.Blackhole()
	p.Heal()
	p.Heal()
	roundTrip(t, late, "after repeated switches")
}

func TestProxyBlackholeStopsBothDirections(t *testing.T) {
	// The target speaks first, so the direction from target to client is
	// checked without any client bytes crossing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	speak := make(chan string)
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		for msg := range speak {
			if _, err := conn.Write([]byte(msg)); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { <-serverDone })
	defer close(speak)

	p := startProxy(t, ln.Addr().String())
	conn := dial(t, p.Addr())
	speak <- "hi"
	require.Equal(t, "hi", readN(t, conn, 2))

	p.Blackhole()
	speak <- "held"
	requireSilent(t, conn)

	p.Heal()
	assert.Equal(t, "held", readN(t, conn, 4))
}

func TestProxyLatencyDelaysEachDirection(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	conn := dial(t, p.Addr())
	roundTrip(t, conn, "warm up")

	const delay = 100 * time.Millisecond
	p.SetLatency(delay, 0)
	start := time.Now()
	roundTrip(t, conn, "slow")
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, 2*delay, "a round trip crosses the proxy twice")
	t.Logf("round trip with %s latency each way: %s", delay, elapsed)

	p.SetLatency(0, 0)
	start = time.Now()
	roundTrip(t, conn, "fast")
	assert.Less(t, time.Since(start), 2*delay, "latency should be off")
}

func TestProxyJitterKeepsOrder(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	p.SetLatency(5*time.Millisecond, 5*time.Millisecond)
	conn := dial(t, p.Addr())

	// Many small writes become many chunks with random delays, and the
	// bytes must still arrive in TCP order.
	var want bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&want, "%05d;", i)
	}
	written := make(chan error, 1)
	go func() {
		data := want.Bytes()
		for i := 0; i < len(data); i += 6 {
			if _, err := conn.Write(data[i : i+6]); err != nil {
				written <- err
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		written <- nil
	}()
	require.Equal(t, want.String(), readN(t, conn, want.Len()))
	require.NoError(t, <-written)
}

func TestProxyResetAllKeepsAccepting(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	first := dial(t, p.Addr())
	second := dial(t, p.Addr())
	roundTrip(t, first, "one")
	roundTrip(t, second, "two")

	p.ResetAll()
	requireEnded(t, first)
	requireEnded(t, second)

	roundTrip(t, dial(t, p.Addr()), "new connection")
}

func TestProxyCloseTwice(t *testing.T) {
	echo := startEcho(t)
	p, err := faultproxy.New("127.0.0.1:0", echo.addr())
	require.NoError(t, err)
	conn := dial(t, p.Addr())
	roundTrip(t, conn, "open")

	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	requireEnded(t, conn)
	assert.Zero(t, p.ConnCount())

	_, err = net.DialTimeout("tcp", p.Addr(), waitTimeout)
	assert.Error(t, err, "a closed proxy should not accept")

	// Fault switches after Close do nothing and do not panic.
	p.Cut()
	p.Blackhole()
	p.Heal()
	p.ResetAll()
}

func TestProxyTargetDownClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	target := ln.Addr().String()
	require.NoError(t, ln.Close())

	p := startProxy(t, target)
	requireRejected(t, p.Addr())
}

func TestNewRejectsBadListenAddress(t *testing.T) {
	_, err := faultproxy.New("127.0.0.1:not-a-port", "127.0.0.1:1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:not-a-port")
}
