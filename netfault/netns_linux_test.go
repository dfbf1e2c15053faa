package netfault

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// envInNetns is set to 1 for the re-executed test binary, which runs inside
// the private network namespace that unshare --net created.
const envInNetns = "WSCLUSTER_NETFAULT_IN_NETNS"

// TestFaultsInPrivateNetns applies every fault in a throwaway network
// namespace, so it never touches the host's rules. It re-runs this test
// binary under "unshare --net", which needs root (or CAP_SYS_ADMIN).
func TestFaultsInPrivateNetns(t *testing.T) {
	if os.Getenv(envInNetns) == "1" {
		runInNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace with unshare --net")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not on PATH")
	}
	cmd := exec.Command(unshare, "--net", "--", os.Args[0], "-test.run=^TestFaultsInPrivateNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envInNetns+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("output in the private namespace:\n%s", out)
	require.NoError(t, err, "the test failed inside the private network namespace")
}

func runInNetns(t *testing.T) {
	// Refuse to run anywhere but in a fresh namespace, whose only interface
	// is lo, because the steps below change the firewall.
	links, err := netlink.LinkList()
	require.NoError(t, err)
	require.Len(t, links, 1, "expected a fresh network namespace with only lo")
	require.Equal(t, "lo", links[0].Attrs().Name)
	require.NoError(t, netlink.LinkSetUp(links[0]))
	t.Cleanup(func() { assert.NoError(t, Heal("")) })

	t.Run("partition", testPartitionLoopback)
	t.Run("loss", testLossLoopback)
	t.Run("delay", testDelayLoopback)
	t.Run("coexist", testPartitionKeepsLoss)
	t.Run("bad device", testDegradeUnknownDevice)
	t.Run("nfqueue delay", testQueueDelayLoopback)
	t.Run("nfqueue without serve", testQueueDelayWithoutServe)
	t.Run("reset sock-destroy", testResetSockDestroy)
	t.Run("reset nftables", testResetNFTables)
}

func testPartitionLoopback(t *testing.T) {
	blocked := netip.MustParseAddr("127.0.0.2")
	require.NoError(t, Partition([]netip.Addr{blocked}))
	assertRules(t, 2)
	assert.Error(t, dialOnce("127.0.0.2"), "a connection to the partitioned address succeeded")
	assert.NoError(t, dialOnce("127.0.0.1"), "the partition blocked an address not in --drop")

	require.NoError(t, Partition(nil))
	assertRules(t, 0)
	assert.NoError(t, dialOnce("127.0.0.2"), "removing the partition did not restore the address")
}

func testLossLoopback(t *testing.T) {
	require.NoError(t, degrade(Degradation{Device: "lo", Loss: 0.5}))
	assertRules(t, 1)
	received := udpDelivered(t, "127.0.0.1", 2000)
	assert.InDelta(t, 1000, received, 150, "loss 0.5 should drop about half of 2000 datagrams")

	// Peers scope the loss to packets from those sources.
	peer := netip.MustParseAddr("127.0.0.2")
	require.NoError(t, degrade(Degradation{Device: "lo", Loss: 1, Peers: []netip.Addr{peer}}))
	assert.Equal(t, 0, udpDelivered(t, "127.0.0.2", 200), "loss 1 must drop every datagram from the peer")
	assert.Equal(t, 200, udpDelivered(t, "127.0.0.1", 200), "loss must not touch other sources")

	require.NoError(t, degrade(Degradation{Device: "lo"}))
	assertRules(t, 0)
}

func testDelayLoopback(t *testing.T) {
	err := degrade(Degradation{Device: "lo", Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, DelayMechanism: DelayNetem})
	if err != nil {
		// Kernels built without sch_netem cannot delay, and the error must name
		// the missing qdisc.
		var unsupported *UnsupportedError
		require.ErrorAs(t, err, &unsupported)
		assert.Equal(t, "sch_netem", unsupported.Missing)
		assert.Contains(t, err.Error(), "unsupported: sch_netem")
		t.Skipf("kernel without netem: %v", err)
	}
	s, err := ReadStatus("")
	require.NoError(t, err)
	assert.True(t, s.HasDelay(), "no netem qdisc after Degrade: %+v", s.Qdiscs)

	require.NoError(t, Heal(""))
	s, err = ReadStatus("")
	require.NoError(t, err)
	assert.False(t, s.HasDelay(), "Heal left a qdisc: %+v", s.Qdiscs)
}

func testPartitionKeepsLoss(t *testing.T) {
	require.NoError(t, degrade(Degradation{Device: "lo", Loss: 0.1}))
	require.NoError(t, Partition([]netip.Addr{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("::2")}))
	assertRules(t, 1+4)

	require.NoError(t, Heal(""))
	assertRules(t, 0)
	require.NoError(t, Heal(""), "a second Heal must be a no-op")
}

func testDegradeUnknownDevice(t *testing.T) {
	err := degrade(Degradation{Device: "nosuchdev0", Loss: 0.1})
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrUnsupported), "a missing device is not a missing kernel feature: %v", err)
	assert.Contains(t, err.Error(), "nosuchdev0")
}

// degrade runs Degrade without a serve process.
func degrade(d Degradation) error {
	_, err := Degrade(d, "")
	return err
}

func assertRules(t *testing.T, want int) {
	t.Helper()
	s, err := ReadStatus("")
	require.NoError(t, err)
	assert.Equal(t, want, s.NFTRules, "rules in table inet %s", TableName)
}

// dialOnce opens and closes a TCP connection to a listener on host.
func dialOnce(host string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 500*time.Millisecond)
	if err != nil {
		return err
	}
	return c.Close()
}

// udpDelivered sends n datagrams from source to a listener on 127.0.0.1 and
// returns how many arrived. It paces the sends so the receive buffer never
// overflows, because an overflow would look like loss.
func udpDelivered(t *testing.T, source string, n int) int {
	t.Helper()
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer rx.Close()
	tx, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(source)}, rx.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer tx.Close()

	received := 0
	buf := make([]byte, 64)
	for i := 0; i < n; i++ {
		_, err := tx.Write([]byte("x"))
		require.NoError(t, err)
		if i%50 == 49 || i == n-1 {
			received += drainUDP(rx, buf)
		}
	}
	return received
}

// drainUDP reads datagrams until none arrives for 20 ms.
func drainUDP(rx *net.UDPConn, buf []byte) int {
	count := 0
	for {
		_ = rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, _, err := rx.ReadFromUDP(buf); err != nil {
			return count
		}
		count++
	}
}
