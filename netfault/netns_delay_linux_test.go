package netfault

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run inside the private namespace of TestFaultsInPrivateNetns.

// startControl runs a control server, as serve does, on a socket in a
// temporary directory.
func startControl(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	server, err := ListenControl(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- server.Serve() }()
	t.Cleanup(func() {
		assert.NoError(t, server.Close())
		assert.NoError(t, <-served)
	})
	return path
}

func testQueueDelayLoopback(t *testing.T) {
	control := startControl(t)
	_, err := ListenControl(control, slog.Default())
	assert.ErrorContains(t, err, "another serve process listens on it")
	slow := netip.MustParseAddr("127.0.0.2")
	d := Degradation{Device: "lo", Delay: 80 * time.Millisecond, Jitter: 20 * time.Millisecond, Peers: []netip.Addr{slow}, DelayMechanism: DelayNFQueue}
	mechanism, err := Degrade(d, control)
	require.NoError(t, err)
	assert.Equal(t, DelayNFQueue, mechanism)

	// The rule and the serve process's delay show in the status.
	s, err := ReadStatus(control)
	require.NoError(t, err)
	assert.Equal(t, 1, s.NFTRules, "one queue rule for the one peer")
	require.NotNil(t, s.NFQueue, "status without the serve process's queue")
	assert.True(t, s.NFQueue.Bound)
	assert.Equal(t, 80*time.Millisecond, s.NFQueue.Delay)
	assert.Equal(t, 20*time.Millisecond, s.NFQueue.Jitter)
	assert.True(t, s.HasDelay())

	// Datagrams to the peer arrive 60-100 ms late and in order, and
	// those to another address are not delayed.
	delays := udpDelays(t, "127.0.0.2", 40, 5*time.Millisecond)
	for i, got := range delays {
		assert.GreaterOrEqual(t, got, 60*time.Millisecond, "datagram %d to the delayed peer", i)
		assert.Less(t, got, 200*time.Millisecond, "datagram %d to the delayed peer", i)
	}
	for i, got := range udpDelays(t, "127.0.0.1", 10, time.Millisecond) {
		assert.Less(t, got, 30*time.Millisecond, "datagram %d to an address without delay", i)
	}
	s, err = ReadStatus(control)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, s.NFQueue.Released, uint64(40), "packets released by the queue")
	assert.Zero(t, s.NFQueue.Pending)

	// A bulk TCP transfer through the delay arrives whole. On loopback the
	// kernel queues GSO packets of up to 64 KiB.
	start := time.Now()
	assert.Equal(t, 1<<20, tcpTransfer(t, "127.0.0.2", 1<<20), "bytes received through the delay")
	t.Logf("1 MiB through 80ms ± 20ms took %s", time.Since(start))

	// Loss coexists with the delay: both chains, and 100% loss from the
	// peer drops everything.
	d.Loss = 1
	_, err = Degrade(d, control)
	require.NoError(t, err)
	assertRulesWith(t, control, 2)

	// Heal releases a packet held for seconds at once and removes both
	// the rules and the delay.
	d.Loss, d.Delay, d.Jitter = 0, 3*time.Second, 0
	_, err = Degrade(d, control)
	require.NoError(t, err)
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	require.NoError(t, err)
	defer rx.Close()
	tx, err := net.DialUDP("udp", nil, rx.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer tx.Close()
	_, err = tx.Write([]byte("held"))
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	healed := time.Now()
	require.NoError(t, Heal(control))
	require.NoError(t, rx.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = rx.Read(make([]byte, 8))
	require.NoError(t, err, "the held datagram did not arrive within 2s of heal")
	assert.Less(t, time.Since(healed), time.Second, "heal must release held packets at once")
	s, err = ReadStatus(control)
	require.NoError(t, err)
	assert.Zero(t, s.NFTRules)
	assert.False(t, s.HasDelay(), "delay after heal: %+v", s.NFQueue)
	for i, got := range udpDelays(t, "127.0.0.2", 10, time.Millisecond) {
		assert.Less(t, got, 30*time.Millisecond, "datagram %d after heal", i)
	}
}

func testQueueDelayWithoutServe(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.sock")
	d := Degradation{Device: "lo", Delay: 10 * time.Millisecond}

	// With netem missing too, the one-line error names the qdisc and how to
	// get the fallback.
	_, err := Degrade(d, missing)
	var unsupported *UnsupportedError
	if errors.As(err, &unsupported) {
		assert.Equal(t, "sch_netem", unsupported.Missing)
		assert.Contains(t, err.Error(), "wscluster-netfault serve")
	} else {
		require.NoError(t, err, "a kernel with netem delays without serve")
		require.NoError(t, Heal(missing))
	}

	// Asking for NFQUEUE without a serve process fails and names it.
	d.DelayMechanism = DelayNFQueue
	_, err = Degrade(d, missing)
	require.ErrorIs(t, err, errNoServe)
	assertRulesWith(t, missing, 0)
}

func testResetSockDestroy(t *testing.T) {
	client, server := tcpPair(t, "127.0.0.2")
	result, err := ResetConnections([]netip.Addr{netip.MustParseAddr("127.0.0.2")}, ResetOptions{Mechanism: ResetSockDestroy})
	require.NoError(t, err)
	assert.Equal(t, ResetResult{Mechanism: ResetSockDestroy, Connections: 1}, result, "only the client socket has the peer as its remote address")

	// Both ends of the idle connection fail at once, and a new one works.
	assertFailsSoon(t, client, "client")
	assertFailsSoon(t, server, "server")
	assertRules(t, 0)
	require.NoError(t, dialOnce("127.0.0.2"), "a new connection after the reset")

	// Connections with other addresses stay open.
	other, _ := tcpPair(t, "127.0.0.1")
	_, err = ResetConnections([]netip.Addr{netip.MustParseAddr("127.0.0.3")}, ResetOptions{})
	require.NoError(t, err)
	_, err = other.Write([]byte("x"))
	assert.NoError(t, err, "a connection with an address not reset")
}

func testResetNFTables(t *testing.T) {
	client, _ := tcpPair(t, "127.0.0.2")
	peer := netip.MustParseAddr("127.0.0.2")

	// The client sends during the hold, so its packet meets the output
	// rule and the RST fails the client.
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = client.Write([]byte("x"))
	}()
	start := time.Now()
	result, err := ResetConnections([]netip.Addr{peer}, ResetOptions{Mechanism: ResetNFTables, Hold: 300 * time.Millisecond})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the rules stay for the hold")
	assert.Equal(t, ResetResult{Mechanism: ResetNFTables, Connections: 1}, result)
	assertFailsSoon(t, client, "client")
	assertRules(t, 0)
	require.NoError(t, dialOnce("127.0.0.2"), "a new connection after the hold")

	_, err = ResetConnections([]netip.Addr{peer}, ResetOptions{Hold: time.Hour})
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = ResetConnections(nil, ResetOptions{})
	assert.ErrorIs(t, err, ErrInvalid)
}

// tcpTransfer sends size bytes from 127.0.0.1 to a listener on host and
// returns how many arrived.
func tcpTransfer(t *testing.T, host string, size int) int {
	t.Helper()
	client, server := tcpPair(t, host)
	go func() {
		_, _ = client.Write(make([]byte, size))
		_ = client.Close()
	}()
	require.NoError(t, server.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, err := io.Copy(io.Discard, server)
	require.NoError(t, err)
	return int(n)
}

// tcpPair returns both ends of a TCP connection from 127.0.0.1 to a
// listener on host.
func tcpPair(t *testing.T, host string) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	require.NoError(t, err)
	defer ln.Close()
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	client, err = dialer.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// assertFailsSoon checks that a read on c fails with an error other than
// a timeout within a second.
func assertFailsSoon(t *testing.T, c net.Conn, end string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Second)))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err, "%s end", end)
	var netErr net.Error
	assert.False(t, errors.As(err, &netErr) && netErr.Timeout(), "%s end is still open after 1s: %v", end, err)
	assert.NotErrorIs(t, err, io.EOF, "%s end was closed cleanly, not reset", end)
}

// udpDelays sends n numbered datagrams from 127.0.0.1 to a listener on
// host, gap apart, and returns how late each arrived. It fails the test
// when one is lost or arrives out of order.
func udpDelays(t *testing.T, host string, n int, gap time.Duration) []time.Duration {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
	require.NoError(t, err)
	defer rx.Close()
	tx, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, rx.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer tx.Close()

	sent := make(chan time.Time, n)
	go func() {
		for i := range n {
			sent <- time.Now()
			_, _ = tx.Write(binary.BigEndian.AppendUint32(nil, uint32(i)))
			time.Sleep(gap)
		}
	}()
	delays := make([]time.Duration, n)
	buf := make([]byte, 8)
	for i := range n {
		require.NoError(t, rx.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err := rx.Read(buf)
		require.NoError(t, err, "datagram %d of %d", i, n)
		delays[i] = time.Since(<-sent)
		assert.Equal(t, uint32(i), binary.BigEndian.Uint32(buf), "datagrams out of order")
	}
	return delays
}

func assertRulesWith(t *testing.T, control string, want int) {
	t.Helper()
	s, err := ReadStatus(control)
	require.NoError(t, err)
	assert.Equal(t, want, s.NFTRules, "rules in table inet %s", TableName)
}
