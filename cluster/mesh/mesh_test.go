package mesh

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	cases := map[string]func(*Config){
		"missing node id":     func(c *Config) { c.NodeID = "" },
		"node id with space":  func(c *Config) { c.NodeID = "a b" },
		"node id too long":    func(c *Config) { c.NodeID = string(make([]byte, 65)) },
		"zero incarnation":    func(c *Config) { c.Incarnation = 0 },
		"missing metrics":     func(c *Config) { c.Metrics = nil },
		"peer without port":   func(c *Config) { c.Peers = []string{"node-b"} },
		"peer port zero":      func(c *Config) { c.Peers = []string{"node-b:0"} },
		"empty peer":          func(c *Config) { c.Peers = []string{""} },
		"bad advertise":       func(c *Config) { c.AdvertiseAddr = "node-a" },
		"negative timeout":    func(c *Config) { c.PeerTimeout = -time.Second },
		"negative queue size": func(c *Config) { c.OutboundQueue = -1 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "a")
			mutate(&cfg)
			_, err := New(cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestNewFillsDefaults(t *testing.T) {
	tr, err := New(Config{NodeID: "a", Incarnation: 1, Metrics: metrics.New()})
	require.NoError(t, err)
	assert.Equal(t, DefaultListenAddr, tr.cfg.ListenAddr)
	assert.Equal(t, DefaultHeartbeatInterval, tr.cfg.HeartbeatInterval)
	assert.Equal(t, DefaultPeerTimeout, tr.cfg.PeerTimeout)
	assert.Equal(t, 10*DefaultPeerTimeout, tr.cfg.ForgetAfter)
	assert.Equal(t, 128<<10, tr.cfg.MaxFrameBytes)
	assert.Equal(t, DefaultOutboundQueue, tr.cfg.OutboundQueue)
	assert.Equal(t, DefaultResolveInterval, tr.cfg.ResolveInterval)
	assert.NotNil(t, tr.cfg.LookupHost)
	assert.NoError(t, tr.Close())
}

func TestTwoNodesExchangeInOrder(t *testing.T) {
	a := startNode(t, "a", nil)
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })

	// Each side reports the other with its handshake identity.
	upA := a.waitLinkUps(t, "b", 1)[0]
	upB := b.waitLinkUps(t, "a", 1)[0]
	assert.Equal(t, b.inc, upA.Incarnation)
	assert.Equal(t, b.addr(), upA.Addr)
	assert.Equal(t, a.inc, upB.Incarnation)
	assert.Equal(t, a.addr(), upB.Addr)

	const count = 500
	for i := uint64(1); i <= count; i++ {
		a.send(t, "b", i)
		b.send(t, "a", i)
	}
	for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
		receiver, sender := pair[0], pair[1]
		events := receiver.waitFor(t, "all envelopes", func(events []Event) bool {
			return len(envelopesFrom(events, sender.id)) == count
		})
		for i, env := range envelopesFrom(events, sender.id) {
			require.Equal(t, uint64(i+1), env.Seq, "envelope %d from %s out of order", i, sender.id)
			require.Equal(t, sender.id, env.Origin)
			require.JSONEq(t, `{"n":1}`, string(env.Message.Data))
		}
		assert.Equal(t, float64(count), counterValue(t, sender.metrics.PeerEnvelopesSent.WithLabelValues(receiver.id, "publish")))
		assert.Equal(t, float64(count), counterValue(t, receiver.metrics.PeerEnvelopesReceived.WithLabelValues(sender.id, "publish")))
	}

	// The link stays up: nothing reported it down.
	assert.Zero(t, countEvents(a.snapshot(), EventLinkDown, "b"))
	assert.Zero(t, countEvents(b.snapshot(), EventLinkDown, "a"))
}

func TestThreeNodesFullMesh(t *testing.T) {
	a := startNode(t, "a", nil)
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
	c := startNode(t, "c", func(c *Config) { c.Peers = []string{a.addr(), b.addr()} })
	nodes := []*testNode{a, b, c}

	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				to.waitLinkUps(t, from.id, 1)
			}
		}
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				for i := uint64(1); i <= 50; i++ {
					from.send(t, to.id, i)
				}
			}
		}
	}
	for _, to := range nodes {
		for _, from := range nodes {
			if from == to {
				continue
			}
			events := to.waitFor(t, "envelopes from "+from.id, func(events []Event) bool {
				return len(envelopesFrom(events, from.id)) == 50
			})
			for i, env := range envelopesFrom(events, from.id) {
				require.Equal(t, uint64(i+1), env.Seq)
			}
			assert.Equal(t, 1, countEvents(events, EventLinkUp, from.id), "links of %s from %s", to.id, from.id)
		}
		assert.Equal(t, 2, to.tr.KnownAddrCount(), "known addresses of %s", to.id)
	}
}

func TestWrongSecretRejectedBothSides(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.Secret = "one" })
	b := startNode(t, "b", func(c *Config) { c.Secret = "two"; c.Peers = []string{a.addr()} })

	a.waitRejects(t, reasonAuth)
	b.waitRejects(t, reasonAuth)
	assert.Empty(t, a.snapshot())
	assert.Empty(t, b.snapshot())
	assert.False(t, b.tr.Send("a", publish(b, 1)))
}

func TestSecretOnOneSideOnlyFails(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.Secret = "" })
	b := startNode(t, "b", func(c *Config) { c.Secret = "only here"; c.Peers = []string{a.addr()} })

	a.waitRejects(t, reasonAuth)
	b.waitRejects(t, reasonAuth)
	assert.Empty(t, a.snapshot())
	assert.Empty(t, b.snapshot())
}

func TestOpenMeshWithoutSecret(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.Secret = "" })
	b := startNode(t, "b", func(c *Config) { c.Secret = ""; c.Peers = []string{a.addr()} })
	a.waitLinkUps(t, "b", 1)
	b.waitLinkUps(t, "a", 1)
}

func TestReplayedHandshakeRejected(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false })
	p := newProxy(t)
	p.setTarget(a.addr())
	b := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{p.addr()} })
	a.waitLinkUps(t, "b", 1)
	require.NoError(t, b.tr.Close())
	a.waitFor(t, "link down", func(events []Event) bool { return countEvents(events, EventLinkDown, "b") == 1 })

	// The recording holds b's hello, proof and verdict. Sent again, it
	// lacks a proof over a's fresh nonce.
	recorded := p.recordedBytes()
	require.GreaterOrEqual(t, len(recorded), len(protocolMagic)+proofSize+1)
	conn, err := net.Dial("tcp", a.addr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(recorded)
	require.NoError(t, err)
	readUntilClosed(t, conn)

	a.waitRejects(t, reasonAuth)
	assert.Equal(t, 1, countEvents(a.snapshot(), EventLinkUp, "b"))
}

func TestBadHelloRejected(t *testing.T) {
	a := startNode(t, "a", nil)
	cases := []struct {
		name   string
		hello  []byte
		reason string
	}{
		{"wrong magic", []byte("HTTP/1.1 200 OK\r\n\r\n"), reasonHandshake},
		{"other version", []byte("WSCL\x02rest"), reasonVersion},
		{"invalid node id", append([]byte("WSCL\x01\x03a b"), make([]byte, 50)...), reasonHandshake},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.rejects(t, tc.reason)
			conn, err := net.Dial("tcp", a.addr())
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.Write(tc.hello)
			require.NoError(t, err)
			readUntilClosed(t, conn)
			require.Eventually(t, func() bool { return a.rejects(t, tc.reason) == before+1 }, waitTimeout, 5*time.Millisecond)
		})
	}
	assert.Empty(t, a.snapshot())
}

func TestPeerExchangeConnectsAll(t *testing.T) {
	a := startNode(t, "a", nil)
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
	a.waitLinkUps(t, "b", 1)

	// c knows only a, and learns b from a's peer list.
	c := startNode(t, "c", func(c *Config) { c.Peers = []string{a.addr()} })
	c.waitLinkUps(t, "a", 1)
	c.waitLinkUps(t, "b", 1)
	b.waitLinkUps(t, "c", 1)
	c.send(t, "b", 1)
	b.waitFor(t, "envelope from c", func(events []Event) bool { return len(envelopesFrom(events, "c")) == 1 })

	// Peer lists are consumed by the transport, never reported.
	for _, n := range []*testNode{a, b, c} {
		for _, ev := range n.snapshot() {
			if ev.Kind == EventEnvelope {
				assert.NotEqual(t, wire.KindPeers, ev.Envelope.Kind)
			}
		}
	}
	require.Eventually(t, func() bool { return c.tr.KnownAddrCount() == 2 }, waitTimeout, 5*time.Millisecond)
	assert.Equal(t, []PeerStatus{{ID: "a", Addr: a.addr(), Connected: true}, {ID: "b", Addr: b.addr(), Connected: true}}, sortedByID(c.tr.Peers()))
}

func TestNoPeerExchangeDialsOnlyPeers(t *testing.T) {
	// a sends peer lists; b and c ignore them.
	a := startNode(t, "a", nil)
	b := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{a.addr()} })
	a.waitLinkUps(t, "b", 1)
	c := startNode(t, "c", func(c *Config) { c.PeerExchange = false; c.Peers = []string{a.addr()} })
	c.waitLinkUps(t, "a", 1)

	// Once c has a's list naming b, give it time to (wrongly) dial b.
	require.Eventually(t, func() bool {
		return counterValue(t, c.metrics.PeerEnvelopesReceived.WithLabelValues("a", "peers")) >= 1 &&
			counterValue(t, b.metrics.PeerEnvelopesReceived.WithLabelValues("a", "peers")) >= 1
	}, waitTimeout, 5*time.Millisecond)
	settle()
	assert.Zero(t, countEvents(c.snapshot(), EventLinkUp, "b"))
	assert.Zero(t, countEvents(b.snapshot(), EventLinkUp, "c"))
	assert.Equal(t, 1, c.tr.KnownAddrCount())
	assert.False(t, c.tr.Send("b", publish(c, 1)))
}

func TestDynamicPeerBecomesPeer(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false })
	require.Zero(t, a.tr.KnownAddrCount())
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })

	a.waitLinkUps(t, "b", 1)
	assert.Equal(t, []PeerStatus{{ID: "b", Addr: b.addr(), Connected: true}}, a.tr.Peers())
	assert.Equal(t, 1, a.tr.KnownAddrCount())
	a.send(t, "b", 7)
	events := b.waitFor(t, "envelope from a", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
	assert.Equal(t, uint64(7), envelopesFrom(events, "a")[0].Seq)
}

// listenSecondLoopback starts a node on another loopback address with
// port, so one DNS name can resolve to two nodes with one port.
func listenSecondLoopback(t *testing.T, id string, port int, mutate func(*Config)) *testNode {
	t.Helper()
	for _, host := range []string{"::1", "127.0.0.2"} {
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		require.NoError(t, ln.Close())
		return startNode(t, id, func(c *Config) {
			c.ListenAddr = addr
			mutate(c)
		})
	}
	t.Skip("no second loopback address (::1 or 127.0.0.2) to listen on")
	return nil
}

func TestDNSNameLinksEveryAddress(t *testing.T) {
	noExchange := func(c *Config) { c.PeerExchange = false }
	b := startNode(t, "b", noExchange)
	port := b.tr.Addr().(*net.TCPAddr).Port
	c := listenSecondLoopback(t, "c", port, noExchange)
	secondIP := c.tr.Addr().(*net.TCPAddr).IP.String()

	// The name first resolves to b only, then to both.
	dns := &fakeDNS{}
	dns.set("peers.test", "127.0.0.1")
	a := startNode(t, "a", func(cfg *Config) {
		cfg.PeerExchange = false
		cfg.Peers = []string{net.JoinHostPort("peers.test", strconv.Itoa(port))}
		cfg.LookupHost = dns.lookup
	})
	a.waitLinkUps(t, "b", 1)
	dns.set("peers.test", "127.0.0.1", secondIP)
	a.waitLinkUps(t, "c", 1)
	assert.Equal(t, 2, a.tr.KnownAddrCount())
	a.send(t, "b", 1)
	a.send(t, "c", 1)
	b.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
	c.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
}

func TestDNSRemovedAddressNotRedialed(t *testing.T) {
	b := startNode(t, "b", func(c *Config) { c.PeerExchange = false })
	p := newProxy(t)
	p.setTarget(b.addr())
	proxyPort := p.ln.Addr().(*net.TCPAddr).Port

	dns := &fakeDNS{}
	dns.set("b.test", "127.0.0.1")
	a := startNode(t, "a", func(c *Config) {
		c.PeerExchange = false
		c.Peers = []string{net.JoinHostPort("b.test", strconv.Itoa(proxyPort))}
		c.LookupHost = dns.lookup
	})
	a.waitLinkUps(t, "b", 1)
	require.Equal(t, 2, a.tr.KnownAddrCount(), "the proxy address and b's advertised one")

	// The link outlives the name, and is not dialed again once it breaks.
	dns.set("b.test")
	require.Eventually(t, func() bool { return a.tr.KnownAddrCount() == 1 }, waitTimeout, 5*time.Millisecond)
	a.send(t, "b", 1)
	b.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
	p.kill()
	a.waitFor(t, "link down", func(events []Event) bool { return countEvents(events, EventLinkDown, "b") == 1 })
	settle()
	assert.Equal(t, int32(1), p.accepted.Load())
	assert.Equal(t, 1, countEvents(a.snapshot(), EventLinkUp, "b"))
}

func TestKilledLinkReconnects(t *testing.T) {
	noExchange := func(c *Config) { c.PeerExchange = false }
	a := startNode(t, "a", noExchange)
	p := newProxy(t)
	p.setTarget(a.addr())
	b := startNode(t, "b", func(c *Config) { noExchange(c); c.Peers = []string{p.addr()} })
	a.waitLinkUps(t, "b", 1)
	b.waitLinkUps(t, "a", 1)

	killed := time.Now()
	p.kill()
	for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
		n, peer := pair[0], pair[1]
		events := n.waitLinkUps(t, peer.id, 2)
		var kinds []EventKind
		var links []uint64
		for _, ev := range events {
			if ev.Peer == peer.id && ev.Kind != EventEnvelope {
				kinds = append(kinds, ev.Kind)
				links = append(links, ev.Link)
			}
		}
		require.Equal(t, []EventKind{EventLinkUp, EventLinkDown, EventLinkUp}, kinds, "events of %s", n.id)
		assert.Equal(t, links[0], links[1], "LinkDown of the first link")
		assert.NotEqual(t, links[1], links[2], "a new link id")
		assert.Equal(t, float64(1), counterValue(t, n.metrics.PeerReconnects.WithLabelValues(peer.id)))
	}
	assert.Less(t, time.Since(killed), 10*testHeartbeat, "reconnect took longer than about a heartbeat interval")
	b.send(t, "a", 1)
	a.waitFor(t, "envelope after reconnect", func(events []Event) bool { return len(envelopesFrom(events, "b")) == 1 })
}

func TestReconnectBackoffCapped(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false })
	p := newProxy(t)
	p.refusing.Store(true)
	p.setTarget(a.addr())
	b := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{p.addr()} })

	// Without the cap, the 10th retry would wait up to 50 ms x 2^10.
	require.Eventually(t, func() bool { return p.accepted.Load() >= 10 }, waitTimeout, 5*time.Millisecond)
	p.refusing.Store(false)
	reachable := time.Now()
	b.waitLinkUps(t, "a", 1)
	assert.Less(t, time.Since(reachable), 10*testHeartbeat, "first dial after the address became reachable")
}

func TestSimultaneousDialsKeepOneLink(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			// Each proxy holds its connection until both targets are set,
			// so both handshakes run at once.
			pa, pb := newProxy(t), newProxy(t)
			noExchange := func(c *Config) { c.PeerExchange = false }
			a := startNode(t, "a", func(c *Config) { noExchange(c); c.Peers = []string{pb.addr()} })
			b := startNode(t, "b", func(c *Config) { noExchange(c); c.Peers = []string{pa.addr()} })
			require.Eventually(t, func() bool { return pa.accepted.Load() >= 1 && pb.accepted.Load() >= 1 }, waitTimeout, time.Millisecond)
			pa.setTarget(a.addr())
			pb.setTarget(b.addr())

			a.waitLinkUps(t, "b", 1)
			b.waitLinkUps(t, "a", 1)
			settle()
			for _, n := range []*testNode{a, b} {
				events := n.snapshot()
				assert.Len(t, events, 1, "events of %s: %v", n.id, describe(events))
			}
			a.send(t, "b", 1)
			b.send(t, "a", 1)
			a.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "b")) == 1 })
			b.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
		})
	}
}

// The node with the smaller id decides between two links, so these tests
// run with the accepting node's id on either side of "b".
var acceptorIDs = []string{"a", "z"}

func TestDuplicateNodeIDRejected(t *testing.T) {
	for _, id := range acceptorIDs {
		t.Run(id, func(t *testing.T) {
			a := startNode(t, id, func(c *Config) { c.PeerExchange = false })
			b1 := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{a.addr()} })
			a.waitLinkUps(t, "b", 1)

			b2 := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{a.addr()} })
			a.waitRejects(t, reasonDuplicateID)
			b2.waitRejects(t, reasonDuplicateID)
			settle()

			events := a.snapshot()
			require.Len(t, events, 1, "events of %s: %v", id, describe(events))
			assert.Equal(t, b1.inc, events[0].Incarnation)
			assert.Empty(t, b2.snapshot())
			assert.Empty(t, b1.snapshot()[1:])
		})
	}
}

func TestRestartReplacesSilentLink(t *testing.T) {
	for _, id := range acceptorIDs {
		t.Run(id, func(t *testing.T) {
			// The node closes dead links only after a minute here, so the
			// old link is still there when the restarted node dials in.
			cfg := testConfig(t, id)
			cfg.PeerExchange = false
			cfg.PeerTimeout = 300 * time.Millisecond
			tr, err := New(cfg)
			require.NoError(t, err)
			tr.linkIdle = time.Minute
			a := startTransport(t, tr)

			p := newProxy(t)
			p.setTarget(a.addr())
			b1 := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{p.addr()} })
			a.waitLinkUps(t, "b", 1)

			// The old link goes silent without closing, as after a crash.
			p.frozen.Store(true)
			b2 := startNode(t, "b", func(c *Config) { c.PeerExchange = false; c.Peers = []string{a.addr()} })
			events := a.waitLinkUps(t, "b", 2)

			var kinds []EventKind
			var incs []uint64
			for _, ev := range events {
				kinds = append(kinds, ev.Kind)
				incs = append(incs, ev.Incarnation)
			}
			require.Equal(t, []EventKind{EventLinkUp, EventLinkDown, EventLinkUp}, kinds)
			assert.Equal(t, []uint64{b1.inc, b1.inc, b2.inc}, incs)
			b2.waitLinkUps(t, id, 1)
		})
	}
}

func TestRestartAfterClosedLink(t *testing.T) {
	a := startNode(t, "a", nil)
	b1 := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
	a.waitLinkUps(t, "b", 1)
	require.NoError(t, b1.tr.Close())

	b2 := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
	events := a.waitLinkUps(t, "b", 2)
	assert.Equal(t, EventLinkDown, events[1].Kind)
	assert.Equal(t, b2.inc, events[2].Incarnation)
	a.send(t, "b", 1)
	b2.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
}

func TestOversizedFrameDropsLink(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false; c.MaxFrameBytes = 1024 })
	conn := rawPeer(t, a.addr(), "raw", 42, "test secret")
	a.waitLinkUps(t, "raw", 1)

	writeFrame(t, conn, make([]byte, 1025))
	readUntilClosed(t, conn)
	a.waitFor(t, "link down", func(events []Event) bool { return countEvents(events, EventLinkDown, "raw") == 1 })
	assert.Equal(t, float64(1), a.rejects(t, reasonOversized))

	// The node keeps serving other peers.
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
	b.waitLinkUps(t, "a", 1)
}

func TestBadFramesDropLink(t *testing.T) {
	valid := wire.Append(nil, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "raw", Incarnation: 42})
	cases := []struct {
		name    string
		payload []byte
	}{
		{"garbage", []byte("this is not an envelope")},
		{"trailing bytes", append(append([]byte(nil), valid...), 0)},
		{"other origin", wire.Append(nil, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "other", Incarnation: 42})},
		{"other incarnation", wire.Append(nil, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "raw", Incarnation: 43})},
	}
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false })
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := rawPeer(t, a.addr(), "raw", 42, "test secret")
			a.waitLinkUps(t, "raw", i+1)

			// A valid envelope first shows the link works.
			writeFrame(t, conn, valid)
			writeFrame(t, conn, tc.payload)
			readUntilClosed(t, conn)
			events := a.waitFor(t, "link down", func(events []Event) bool { return countEvents(events, EventLinkDown, "raw") == i+1 })
			assert.Len(t, envelopesFrom(events, "raw"), i+1)
			assert.Equal(t, float64(i+1), a.rejects(t, reasonMalformed))
		})
	}
}

func TestQueueOverflowClosesLink(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false; c.OutboundQueue = 8 })
	rawPeer(t, a.addr(), "raw", 42, "test secret") // never reads
	a.waitLinkUps(t, "raw", 1)

	// Fill the socket buffers until the queue overflows.
	env := publish(a, 1)
	env.Message.Data = []byte(`"` + string(make([]byte, 16<<10)) + `"`)
	for i := range 1 << 20 {
		if !a.tr.Send("raw", env) {
			break
		}
		require.Less(t, i, 1<<20-1, "Send never reported the overflow")
	}
	a.waitFor(t, "link down", func(events []Event) bool { return countEvents(events, EventLinkDown, "raw") == 1 })
	assert.Equal(t, float64(1), counterValue(t, a.metrics.PeerQueueOverflows.WithLabelValues("raw")))
	assert.False(t, a.tr.Send("raw", env))
}

func TestSelfAddressSkipped(t *testing.T) {
	// a reaches itself through the proxy, which its own address check
	// cannot know.
	p := newProxy(t)
	a := startNode(t, "a", func(c *Config) { c.Peers = []string{p.addr()} })
	p.setTarget(a.addr())

	require.Eventually(t, func() bool { return a.tr.KnownAddrCount() == 0 }, waitTimeout, 5*time.Millisecond)
	settle()
	assert.Equal(t, int32(1), p.accepted.Load(), "the self address was dialed again")
	assert.Empty(t, a.snapshot())
	assert.Empty(t, a.tr.Peers())
	for _, reason := range []string{reasonHandshake, reasonAuth, reasonDuplicateID} {
		assert.Zero(t, a.rejects(t, reason), reason)
	}
}

func TestOwnAdvertisedAddressNotDialed(t *testing.T) {
	p := newProxy(t)
	a := startNode(t, "a", func(c *Config) {
		c.AdvertiseAddr = p.addr()
		c.Peers = []string{p.addr()}
	})
	p.setTarget(a.addr())

	settle()
	assert.Zero(t, p.accepted.Load())
	assert.Zero(t, a.tr.KnownAddrCount())
	assert.Empty(t, a.snapshot())
}

func TestLearnedAddressForgotten(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.PeerExchange = false; c.ForgetAfter = 200 * time.Millisecond })
	b := startNode(t, "b", func(c *Config) { c.ForgetAfter = 200 * time.Millisecond; c.Peers = []string{a.addr()} })
	a.waitLinkUps(t, "b", 1)
	require.Equal(t, 1, a.tr.KnownAddrCount())
	require.NoError(t, b.tr.Close())

	// a forgets b's learned address; b never forgets its configured one.
	require.Eventually(t, func() bool { return a.tr.KnownAddrCount() == 0 }, waitTimeout, 5*time.Millisecond)
	assert.Empty(t, a.tr.Peers())
	c := startNode(t, "c", func(c *Config) { c.ForgetAfter = 100 * time.Millisecond; c.Peers = []string{b.addr()} })
	settle()
	assert.Equal(t, 1, c.tr.KnownAddrCount())
	assert.Equal(t, []PeerStatus{{Addr: b.addr()}}, c.tr.Peers())
}

func TestCloseTwiceAndStartAfterClose(t *testing.T) {
	tr, err := New(testConfig(t, "a"))
	require.NoError(t, err)
	events := make(chan Event, 16)
	require.NoError(t, tr.Start(events))
	require.ErrorIs(t, tr.Start(events), ErrStarted)
	require.NoError(t, tr.Close())
	require.NoError(t, tr.Close())
	require.ErrorIs(t, tr.Start(events), ErrClosed)
	assert.False(t, tr.Send("b", &wire.Envelope{Kind: wire.KindHeartbeat}))

	unstarted, err := New(testConfig(t, "b"))
	require.NoError(t, err)
	require.NoError(t, unstarted.Close())
	require.NoError(t, unstarted.Close())
}

func TestCloseFlushesQueuedEnvelopes(t *testing.T) {
	a := startNode(t, "a", nil)
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
	b.waitLinkUps(t, "a", 1)
	a.waitLinkUps(t, "b", 1)

	b.send(t, "a", 1)
	require.True(t, b.tr.Send("a", &wire.Envelope{Kind: wire.KindLeave, Origin: "b", Incarnation: b.inc}))
	require.NoError(t, b.tr.Close())
	events := a.waitFor(t, "leave", func(events []Event) bool {
		envs := envelopesFrom(events, "b")
		return len(envs) == 2 && envs[1].Kind == wire.KindLeave
	})
	assert.Equal(t, wire.KindPublish, envelopesFrom(events, "b")[0].Kind)
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("cluster", func(t *testing.T) {
		// Closed last, so the nodes' Close must end its handshake.
		var stuck net.Conn
		t.Cleanup(func() {
			if stuck != nil {
				_ = stuck.Close()
			}
		})
		a := startNode(t, "a", nil)
		b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })
		c := startNode(t, "c", func(c *Config) { c.Peers = []string{a.addr()} })
		c.waitLinkUps(t, "b", 1)
		a.send(t, "c", 1)
		c.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })

		var err error
		stuck, err = net.Dial("tcp", b.addr())
		require.NoError(t, err)
	})

	// A plain loop, because require.Eventually runs goroutines of its own.
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestPeersListsConfiguredUnreachable(t *testing.T) {
	a := startNode(t, "a", func(c *Config) { c.Peers = []string{"127.0.0.1:1"} })
	assert.Equal(t, 1, a.tr.KnownAddrCount())
	assert.Equal(t, []PeerStatus{{Addr: "127.0.0.1:1"}}, a.tr.Peers())
}

func sortedByID(peers []PeerStatus) []PeerStatus {
	out := append([]PeerStatus(nil), peers...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].ID < out[i].ID {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
