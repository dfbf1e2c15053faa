package memtransport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/memtransport"
	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

// Timings of the test clusters: short, so that a silent peer is declared
// down quickly.
const (
	testHeartbeat   = 50 * time.Millisecond
	testPeerTimeout = 150 * time.Millisecond
)

// waitTimeout bounds every wait for an event that must happen, and
// pollInterval is the pause between two checks of a condition.
const (
	waitTimeout  = 10 * time.Second
	pollInterval = 5 * time.Millisecond
)

// testLogWriter sends log lines to t.Log until the test ends, so that a
// goroutine that logs late cannot make the test panic.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// testLogger returns a logger whose lines appear in the test's output when
// the test fails or runs with -v.
func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// recordingHandler replaces the pub/sub and presence protocols of a node
// and records every call the cluster layer makes to them.
type recordingHandler struct {
	mu       sync.Mutex
	messages []backplane.Message
	// rosters are the presence entries of each remote node, keyed by
	// channel and connection, as SyncNode and ApplyRemote left them.
	rosters map[string]map[string]backplane.PresenceEntry
	// lastSync is the entries of the latest SyncNode per node.
	lastSync map[string][]backplane.PresenceEntry
	// applied is every delta passed to ApplyRemote per node.
	applied map[string][]backplane.PresenceDelta
	// purges are the times of the SyncNode(node, nil) calls per node.
	purges map[string][]time.Time
}

func newRecordingHandler() *recordingHandler {
	return &recordingHandler{
		rosters:  make(map[string]map[string]backplane.PresenceEntry),
		lastSync: make(map[string][]backplane.PresenceEntry),
		applied:  make(map[string][]backplane.PresenceDelta),
		purges:   make(map[string][]time.Time),
	}
}

func rosterKey(e backplane.PresenceEntry) string { return e.Channel + "\x00" + e.Conn }

func (h *recordingHandler) Deliver(msg backplane.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.messages = append(h.messages, msg)
}

func (h *recordingHandler) ApplyRemote(node string, deltas []backplane.PresenceDelta) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied[node] = append(h.applied[node], deltas...)
	roster := h.rosters[node]
	if roster == nil {
		roster = make(map[string]backplane.PresenceEntry)
		h.rosters[node] = roster
	}
	for _, d := range deltas {
		if d.Op == backplane.PresenceJoin {
			roster[rosterKey(d.Entry)] = d.Entry
		} else {
			delete(roster, rosterKey(d.Entry))
		}
	}
}

func (h *recordingHandler) SyncNode(node string, entries []backplane.PresenceEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSync[node] = append([]backplane.PresenceEntry(nil), entries...)
	roster := make(map[string]backplane.PresenceEntry, len(entries))
	for _, e := range entries {
		roster[rosterKey(e)] = e
	}
	h.rosters[node] = roster
	// The core purges with nil entries. An empty slice is a full sync of
	// a node that has no entries.
	if entries == nil {
		h.purges[node] = append(h.purges[node], time.Now())
	}
}

// LocalEntries returns nothing: the cluster core keeps its own copy of the
// local entries from PresenceChanged.
func (h *recordingHandler) LocalEntries() []backplane.PresenceEntry { return nil }

// messagesOn returns the delivered messages of channel in delivery order.
func (h *recordingHandler) messagesOn(channel string) []backplane.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []backplane.Message
	for _, m := range h.messages {
		if m.Channel == channel {
			out = append(out, m)
		}
	}
	return out
}

// hasMessage reports whether the message with id was delivered.
func (h *recordingHandler) hasMessage(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.messages {
		if m.ID == id {
			return true
		}
	}
	return false
}

// roster returns the current entries of node keyed by channel and
// connection.
func (h *recordingHandler) roster(node string) map[string]backplane.PresenceEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]backplane.PresenceEntry, len(h.rosters[node]))
	for k, e := range h.rosters[node] {
		out[k] = e
	}
	return out
}

func (h *recordingHandler) lastSyncOf(node string) ([]backplane.PresenceEntry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	entries, ok := h.lastSync[node]
	return entries, ok
}

func (h *recordingHandler) appliedOf(node string) []backplane.PresenceDelta {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]backplane.PresenceDelta(nil), h.applied[node]...)
}

// firstPurgeSince returns the time of the first purge of node at or after
// since.
func (h *recordingHandler) firstPurgeSince(node string, since time.Time) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, at := range h.purges[node] {
		if !at.Before(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// peerLog records the peer callbacks of one cluster layer as "up x" and
// "down x".
type peerLog struct {
	mu     sync.Mutex
	events []string
}

func (l *peerLog) add(event string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event)
}

func (l *peerLog) count(event string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e == event {
			n++
		}
	}
	return n
}

// testNode is a cluster layer over an in-memory transport.
type testNode struct {
	id        string
	cluster   *cluster.Cluster
	transport *memtransport.Transport
	handler   *recordingHandler
	peers     *peerLog
}

// newTestNode builds, but does not start, a cluster layer on network. It
// closes at the end of the test.
func newTestNode(t *testing.T, network *memtransport.Network, id string) *testNode {
	t.Helper()
	ids := backplane.NewIDs(id)
	transport := network.NewTransport(id, ids.Incarnation())
	c, err := cluster.New(cluster.Config{
		IDs: ids, NodeID: id, Transport: transport, Metrics: metrics.New(),
		Logger:            testLogger(t).With("node", id),
		HeartbeatInterval: testHeartbeat, PeerTimeout: testPeerTimeout,
	})
	require.NoError(t, err)
	node := &testNode{id: id, cluster: c, transport: transport, handler: newRecordingHandler(), peers: &peerLog{}}
	c.Attach(node.handler)
	c.OnPeerConnected(func(peer string) { node.peers.add("up " + peer) })
	c.OnPeerDisconnected(func(peer string) { node.peers.add("down " + peer) })
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return node
}

// startNodes starts a cluster layer per id on network and waits until every
// node has heard all the others.
func startNodes(t *testing.T, network *memtransport.Network, ids ...string) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(ids))
	for i, id := range ids {
		nodes[i] = newTestNode(t, network, id)
	}
	for _, n := range nodes {
		require.NoError(t, n.cluster.Start())
	}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.cluster.ConnectedPeerCount() == len(nodes)-1 },
			waitTimeout, pollInterval, "%s never heard all %d peers", n.id, len(nodes)-1)
	}
	return nodes
}

// publish publishes message number i on channel from n and returns it.
func publish(t *testing.T, n *testNode, channel string, i int) backplane.Message {
	t.Helper()
	msg := backplane.Message{
		ID:      n.cluster.NewMessageID(),
		Channel: channel,
		Data:    json.RawMessage(fmt.Sprintf(`{"from":%q,"i":%d}`, n.id, i)),
		QoS:     i % 2,
	}
	require.NoError(t, n.cluster.Publish(context.Background(), msg))
	return msg
}

// newsChannel is the channel that node id publishes on, so that a
// receiver can tell the origins apart.
func newsChannel(id string) string { return "news." + id }

// presenceJoin returns a join of member number i of node on channel.
func presenceJoin(node, channel string, i int) backplane.PresenceDelta {
	return backplane.PresenceDelta{Op: backplane.PresenceJoin, Entry: backplane.PresenceEntry{
		Channel: channel,
		Member:  fmt.Sprintf("%s-member-%d", node, i),
		Node:    node,
		Conn:    fmt.Sprintf("%s:conn-%d", node, i),
		Info:    json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
	}}
}

// rosterOf returns entries keyed as recordingHandler.roster keys them.
func rosterOf(entries ...backplane.PresenceEntry) map[string]backplane.PresenceEntry {
	out := make(map[string]backplane.PresenceEntry, len(entries))
	for _, e := range entries {
		out[rosterKey(e)] = e
	}
	return out
}

// waitRoster waits until n's roster of node equals want.
func waitRoster(t *testing.T, n *testNode, node string, want map[string]backplane.PresenceEntry) {
	t.Helper()
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(want, n.handler.roster(node)) },
		waitTimeout, pollInterval, "%s's roster of %s: want %d entries, have %v", n.id, node, len(want), n.handler.roster(node))
}

// waitMessage waits until n has delivered the message with id.
func waitMessage(t *testing.T, n *testNode, id string) {
	t.Helper()
	require.Eventually(t, func() bool { return n.handler.hasMessage(id) },
		waitTimeout, pollInterval, "%s never delivered message %s", n.id, id)
}

func TestClusterPublishOnceInOrder(t *testing.T) {
	nodes := startNodes(t, memtransport.NewNetwork(), "a", "b", "c")

	// The nodes publish in turns, so the three streams interleave.
	const count = 100
	sent := make(map[string][]backplane.Message)
	for i := range count {
		for _, n := range nodes {
			sent[n.id] = append(sent[n.id], publish(t, n, newsChannel(n.id), i))
		}
	}

	// The last publish of each origin is a barrier: delivery per link is in
	// order, so once it arrives, every earlier publish and every duplicate
	// of one would have arrived before it.
	for _, receiver := range nodes {
		for _, origin := range nodes {
			if origin == receiver {
				continue
			}
			last := sent[origin.id][count-1]
			waitMessage(t, receiver, last.ID)
			assert.Equal(t, sent[origin.id], receiver.handler.messagesOn(newsChannel(origin.id)),
				"%s must deliver each publish of %s once, in order", receiver.id, origin.id)
		}
		assert.Empty(t, receiver.handler.messagesOn(newsChannel(receiver.id)),
			"%s must not receive its own publishes", receiver.id)
	}
}

func TestClusterPresenceReplicated(t *testing.T) {
	network := memtransport.NewNetwork()
	nodes := startNodes(t, network, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]

	// Changes on a linked node reach the others as deltas.
	joins := []backplane.PresenceDelta{
		presenceJoin("a", "lobby", 0),
		presenceJoin("a", "lobby", 1),
		presenceJoin("a", "game", 2),
	}
	for _, d := range joins {
		a.cluster.PresenceChanged(d)
	}
	want := rosterOf(joins[0].Entry, joins[1].Entry, joins[2].Entry)
	for _, n := range []*testNode{b, c} {
		waitRoster(t, n, "a", want)
		assert.Subset(t, n.handler.appliedOf("a"), joins, "%s must get a's joins through ApplyRemote", n.id)
	}

	leave := backplane.PresenceDelta{Op: backplane.PresenceLeave, Entry: joins[0].Entry}
	a.cluster.PresenceChanged(leave)
	want = rosterOf(joins[1].Entry, joins[2].Entry)
	for _, n := range []*testNode{b, c} {
		waitRoster(t, n, "a", want)
		assert.Contains(t, n.handler.appliedOf("a"), leave, "%s must get a's leave through ApplyRemote", n.id)
	}

	// A node that joins later gets the current entries in the full sync
	// of its new link.
	d := newTestNode(t, network, "d")
	require.NoError(t, d.cluster.Start())
	waitRoster(t, d, "a", want)
	synced, ok := d.handler.lastSyncOf("a")
	require.True(t, ok, "d must get a's entries through SyncNode")
	assert.ElementsMatch(t, []backplane.PresenceEntry{joins[1].Entry, joins[2].Entry}, synced)
}

func TestClusterIsolateThenHeal(t *testing.T) {
	network := memtransport.NewNetwork()
	nodes := startNodes(t, network, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	join := presenceJoin("c", "lobby", 0)
	c.cluster.PresenceChanged(join)
	waitRoster(t, a, "c", rosterOf(join.Entry))
	waitRoster(t, b, "c", rosterOf(join.Entry))

	isolatedAt := time.Now()
	network.Isolate("c")

	// A cut link alone does not make a peer down: the majority purges c
	// only after c was silent for the peer timeout. When the loops run on
	// time, c sent its last heartbeat at most one heartbeat interval and
	// one loop tick (12.5ms) before the cut. A purge therefore comes no
	// sooner than 87.5ms after the cut, which is more than half the peer
	// timeout.
	for _, n := range []*testNode{a, b} {
		require.Eventually(t, func() bool { return n.peers.count("down c") == 1 },
			waitTimeout, pollInterval, "%s never reported c down", n.id)
		purgedAt, ok := n.handler.firstPurgeSince("c", isolatedAt)
		require.True(t, ok, "%s must purge c's presence with SyncNode(c, nil)", n.id)
		assert.GreaterOrEqual(t, purgedAt.Sub(isolatedAt), testPeerTimeout/2,
			"%s purged c before the peer timeout", n.id)
		assert.Empty(t, n.handler.roster("c"))
	}
	require.Eventually(t, func() bool { return c.peers.count("down a") == 1 && c.peers.count("down b") == 1 },
		waitTimeout, pollInterval, "c never reported a and b down")
	for _, p := range c.cluster.Peers() {
		assert.False(t, p.Linked, "c must have no link to %s", p.ID)
	}

	// The majority keeps working while c is cut off.
	const count = 10
	sent := make(map[string][]backplane.Message)
	for i := range count {
		for _, n := range []*testNode{a, b} {
			sent[n.id] = append(sent[n.id], publish(t, n, newsChannel(n.id), i))
		}
	}
	waitMessage(t, b, sent["a"][count-1].ID)
	waitMessage(t, a, sent["b"][count-1].ID)
	assert.Empty(t, c.handler.messagesOn(newsChannel("a")), "c must receive nothing while isolated")
	assert.Empty(t, c.handler.messagesOn(newsChannel("b")), "c must receive nothing while isolated")

	// After Heal, the replay brings c the publishes it missed, and a later
	// publish of each origin is the barrier behind which a duplicate would
	// show.
	network.Heal()
	for _, n := range []*testNode{a, b} {
		require.Eventually(t, func() bool { return c.peers.count("up "+n.id) == 2 },
			waitTimeout, pollInterval, "c never heard %s again", n.id)
		sent[n.id] = append(sent[n.id], publish(t, n, newsChannel(n.id), count))
	}
	for _, origin := range []string{"a", "b"} {
		waitMessage(t, c, sent[origin][count].ID)
		assert.Equal(t, sent[origin], c.handler.messagesOn(newsChannel(origin)),
			"c must deliver each publish of %s once, in order", origin)
	}
	waitRoster(t, a, "c", rosterOf(join.Entry))
	waitRoster(t, b, "c", rosterOf(join.Entry))
}

func TestClusterCloseIsLeave(t *testing.T) {
	network := memtransport.NewNetwork()
	nodes := startNodes(t, network, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	join := presenceJoin("c", "lobby", 0)
	c.cluster.PresenceChanged(join)
	waitRoster(t, a, "c", rosterOf(join.Entry))
	waitRoster(t, b, "c", rosterOf(join.Entry))

	// When the loops run on time, a purge by timeout comes no sooner than
	// the peer timeout minus one heartbeat interval and one loop tick
	// (12.5ms) after Close starts, which is 87.5ms. The leave that Close
	// sends makes the purge much faster than that.
	closedAt := time.Now()
	require.NoError(t, c.cluster.Close())
	for _, n := range []*testNode{a, b} {
		require.Eventually(t, func() bool { return n.peers.count("down c") == 1 },
			waitTimeout, pollInterval, "%s never reported c down", n.id)
		purgedAt, ok := n.handler.firstPurgeSince("c", closedAt)
		require.True(t, ok, "%s must purge c's presence with SyncNode(c, nil)", n.id)
		assert.Less(t, purgedAt.Sub(closedAt), testPeerTimeout/2, "%s purged c by timeout, not on its leave", n.id)
		assert.Empty(t, n.handler.roster("c"))

		peers := n.cluster.Peers()
		require.Len(t, peers, 1, "%s must forget the closed transport", n.id)
		assert.NotEqual(t, "c", peers[0].ID)
	}
}

func TestCloseTwiceLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	network := memtransport.NewNetwork()
	nodes := startNodes(t, network, "a", "b", "c")
	for i, n := range nodes {
		publish(t, n, newsChannel(n.id), i)
	}
	idle := network.NewTransport("idle", 1)

	for _, n := range nodes {
		require.NoError(t, n.cluster.Close())
		require.NoError(t, n.cluster.Close())
		require.NoError(t, n.transport.Close(), "the cluster closed the transport already")
		require.NoError(t, n.transport.Close())
	}
	require.NoError(t, idle.Close())
	require.NoError(t, idle.Close())

	// Poll on this goroutine rather than with require.Eventually, which
	// runs each check on a goroutine of its own that the count would
	// include.
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
	if after := runtime.NumGoroutine(); after > before {
		stacks := make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		t.Fatalf("goroutines left after Close: %d before, %d after:\n%s", before, after, stacks)
	}
}

// nextEvent returns the next event on events or fails the test after
// waitTimeout.
func nextEvent(t *testing.T, events <-chan cluster.TransportEvent) cluster.TransportEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(waitTimeout):
		require.FailNow(t, "no transport event within the wait timeout")
		return cluster.TransportEvent{}
	}
}

// startTransport starts a transport for id on network with an events
// channel of the given capacity. It closes at the end of the test.
func startTransport(t *testing.T, network *memtransport.Network, id string, incarnation uint64, capacity int) (*memtransport.Transport, chan cluster.TransportEvent) {
	t.Helper()
	tr := network.NewTransport(id, incarnation)
	events := make(chan cluster.TransportEvent, capacity)
	require.NoError(t, tr.Start(events))
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	return tr, events
}

// publishEnvelope returns a publish envelope of origin with seq.
func publishEnvelope(origin string, incarnation, seq uint64) *wire.Envelope {
	return &wire.Envelope{
		Kind: wire.KindPublish, Origin: origin, Incarnation: incarnation, Seq: seq,
		Message: backplane.Message{ID: fmt.Sprintf("%s:%d", origin, seq), Channel: "news", Data: json.RawMessage(`{}`)},
	}
}

// requireLinkEvent checks that ev is a link event of kind with peer.
func requireLinkEvent(t *testing.T, ev cluster.TransportEvent, kind cluster.EventKind, peer string) {
	t.Helper()
	require.Equal(t, kind, ev.Kind, "event %+v", ev)
	require.Equal(t, peer, ev.Peer, "event %+v", ev)
}

func TestTransportLinkUpAndOrder(t *testing.T) {
	network := memtransport.NewNetwork()
	a, aEvents := startTransport(t, network, "a", 11, 16)
	b := network.NewTransport("b", 22)
	assert.Equal(t, 1, a.KnownAddrCount(), "a knows b before b starts")
	assert.Equal(t, []backplane.PeerStatus{{ID: "b", Addr: "mem:b"}}, a.Peers())
	assert.False(t, a.Send("b", publishEnvelope("a", 11, 1)), "no link before b starts")

	bEvents := make(chan cluster.TransportEvent, 1024)
	require.NoError(t, b.Start(bEvents))
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	upA, upB := nextEvent(t, aEvents), nextEvent(t, bEvents)
	requireLinkEvent(t, upA, cluster.EventLinkUp, "b")
	requireLinkEvent(t, upB, cluster.EventLinkUp, "a")
	assert.Equal(t, uint64(22), upA.Incarnation, "a's LinkUp carries b's incarnation")
	assert.Equal(t, uint64(11), upB.Incarnation, "b's LinkUp carries a's incarnation")
	assert.Equal(t, upA.Link, upB.Link, "both sides name the same link")
	assert.Equal(t, []backplane.PeerStatus{{ID: "b", Addr: "mem:b", Connected: true}}, a.Peers())
	assert.False(t, a.Send("nobody", publishEnvelope("a", 11, 1)), "no link to an unknown peer")

	const count = 500
	for seq := uint64(1); seq <= count; seq++ {
		require.True(t, a.Send("b", publishEnvelope("a", 11, seq)))
	}
	for seq := uint64(1); seq <= count; seq++ {
		ev := nextEvent(t, bEvents)
		require.Equal(t, cluster.EventEnvelope, ev.Kind)
		require.Equal(t, "a", ev.Peer)
		require.Equal(t, upB.Link, ev.Link)
		require.Equal(t, publishEnvelope("a", 11, seq), ev.Envelope, "envelopes arrive in order")
	}
}

func TestTransportSendCopiesEnvelope(t *testing.T) {
	network := memtransport.NewNetwork()
	a, _ := startTransport(t, network, "a", 1, 16)
	_, bEvents := startTransport(t, network, "b", 2, 16)
	requireLinkEvent(t, nextEvent(t, bEvents), cluster.EventLinkUp, "a")

	env := publishEnvelope("a", 1, 1)
	env.Message.Data = json.RawMessage(`{"v":1}`)
	require.True(t, a.Send("b", env))
	env.Message.Data[5] = '2'
	env.Seq = 99

	ev := nextEvent(t, bEvents)
	require.Equal(t, cluster.EventEnvelope, ev.Kind)
	assert.NotSame(t, env, ev.Envelope)
	assert.Equal(t, uint64(1), ev.Envelope.Seq)
	assert.JSONEq(t, `{"v":1}`, string(ev.Envelope.Message.Data), "the receiver must not share the sender's memory")

	// An envelope that the wire codec rejects is not sent.
	bad := publishEnvelope("a", 1, 2)
	bad.Message.QoS = 7
	assert.False(t, a.Send("b", bad))
}

func TestPartitionDropsQueuedEnvelopes(t *testing.T) {
	network := memtransport.NewNetwork()
	a, aEvents := startTransport(t, network, "a", 1, 16)
	// b's channel has no buffer, so the envelopes wait in b's queue.
	_, bEvents := startTransport(t, network, "b", 2, 0)
	up := nextEvent(t, bEvents)
	requireLinkEvent(t, up, cluster.EventLinkUp, "a")
	requireLinkEvent(t, nextEvent(t, aEvents), cluster.EventLinkUp, "b")

	for seq := uint64(1); seq <= 10; seq++ {
		require.True(t, a.Send("b", publishEnvelope("a", 1, seq)))
	}
	network.Partition("a", "b")
	assert.False(t, a.Send("b", publishEnvelope("a", 1, 11)), "no link after Partition")

	// b's goroutine may hold the first envelope already; the rest are
	// dropped, and the LinkDown follows.
	envelopes := 0
	ev := nextEvent(t, bEvents)
	for ev.Kind == cluster.EventEnvelope {
		envelopes++
		ev = nextEvent(t, bEvents)
	}
	assert.LessOrEqual(t, envelopes, 1, "queued envelopes must be dropped")
	requireLinkEvent(t, ev, cluster.EventLinkDown, "a")
	assert.Equal(t, up.Link, ev.Link)
	down := nextEvent(t, aEvents)
	requireLinkEvent(t, down, cluster.EventLinkDown, "b")
	assert.Equal(t, up.Link, down.Link)
	assert.Equal(t, []backplane.PeerStatus{{ID: "b", Addr: "mem:b"}}, a.Peers())

	// Heal brings a new link with a new id, after the old one's LinkDown.
	network.Heal()
	newUp := nextEvent(t, bEvents)
	requireLinkEvent(t, newUp, cluster.EventLinkUp, "a")
	assert.NotEqual(t, up.Link, newUp.Link, "a new link gets a new id")
	requireLinkEvent(t, nextEvent(t, aEvents), cluster.EventLinkUp, "b")
	require.True(t, a.Send("b", publishEnvelope("a", 1, 12)))
	ev = nextEvent(t, bEvents)
	assert.Equal(t, cluster.EventEnvelope, ev.Kind)
	assert.Equal(t, newUp.Link, ev.Link)
}

func TestCloseDeliversQueuedEnvelopesFirst(t *testing.T) {
	network := memtransport.NewNetwork()
	a := network.NewTransport("a", 1)
	require.NoError(t, a.Start(make(chan cluster.TransportEvent, 16)))
	// b's channel has no buffer, so the envelopes wait in b's queue.
	b, bEvents := startTransport(t, network, "b", 2, 0)
	up := nextEvent(t, bEvents)
	requireLinkEvent(t, up, cluster.EventLinkUp, "a")

	const count = 10
	for seq := uint64(1); seq <= count; seq++ {
		require.True(t, a.Send("b", publishEnvelope("a", 1, seq)))
	}
	require.NoError(t, a.Close())
	require.NoError(t, a.Close())

	// Like a leave before an orderly close, the envelopes sent before
	// Close still arrive, then the LinkDown.
	for seq := uint64(1); seq <= count; seq++ {
		ev := nextEvent(t, bEvents)
		require.Equal(t, cluster.EventEnvelope, ev.Kind)
		require.Equal(t, seq, ev.Envelope.Seq)
	}
	down := nextEvent(t, bEvents)
	requireLinkEvent(t, down, cluster.EventLinkDown, "a")
	assert.Equal(t, up.Link, down.Link)

	assert.Empty(t, b.Peers())
	assert.Equal(t, 0, b.KnownAddrCount())
	assert.Empty(t, a.Peers(), "a closed transport has no peers")
	assert.Equal(t, 0, a.KnownAddrCount())
	assert.False(t, a.Send("b", publishEnvelope("a", 1, count+1)))
}

func TestIsolateCoversLaterTransports(t *testing.T) {
	network := memtransport.NewNetwork()
	_, aEvents := startTransport(t, network, "a", 1, 16)
	_, bEvents := startTransport(t, network, "b", 2, 16)
	c, cEvents := startTransport(t, network, "c", 3, 16)
	requireLinkEvent(t, nextEvent(t, aEvents), cluster.EventLinkUp, "b")
	requireLinkEvent(t, nextEvent(t, aEvents), cluster.EventLinkUp, "c")
	requireLinkEvent(t, nextEvent(t, bEvents), cluster.EventLinkUp, "a")
	requireLinkEvent(t, nextEvent(t, bEvents), cluster.EventLinkUp, "c")
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkUp, "a")
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkUp, "b")

	network.Isolate("c")
	requireLinkEvent(t, nextEvent(t, aEvents), cluster.EventLinkDown, "c")
	requireLinkEvent(t, nextEvent(t, bEvents), cluster.EventLinkDown, "c")
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkDown, "a")
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkDown, "b")

	// A transport that starts during the isolation links to a and b only.
	d, dEvents := startTransport(t, network, "d", 4, 16)
	requireLinkEvent(t, nextEvent(t, dEvents), cluster.EventLinkUp, "a")
	requireLinkEvent(t, nextEvent(t, dEvents), cluster.EventLinkUp, "b")
	assert.Equal(t, []backplane.PeerStatus{
		{ID: "a", Addr: "mem:a", Connected: true},
		{ID: "b", Addr: "mem:b", Connected: true},
		{ID: "c", Addr: "mem:c"},
	}, d.Peers())
	assert.Equal(t, 3, c.KnownAddrCount(), "c still knows the other transports")
	for _, p := range c.Peers() {
		assert.False(t, p.Connected, "c must have no link to %s", p.ID)
	}

	network.Heal()
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkUp, "a")
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkUp, "b")
	requireLinkEvent(t, nextEvent(t, cEvents), cluster.EventLinkUp, "d")
	for _, p := range c.Peers() {
		assert.True(t, p.Connected, "c must have a link to %s after Heal", p.ID)
	}
}

func TestTransportStartErrors(t *testing.T) {
	network := memtransport.NewNetwork()
	tr := network.NewTransport("a", 1)
	require.ErrorIs(t, tr.Start(nil), memtransport.ErrNilEvents)
	require.NoError(t, tr.Start(make(chan cluster.TransportEvent, 1)))
	require.ErrorIs(t, tr.Start(make(chan cluster.TransportEvent, 1)), memtransport.ErrStarted)
	require.NoError(t, tr.Close())

	closed := network.NewTransport("b", 1)
	require.NoError(t, closed.Close())
	require.ErrorIs(t, closed.Start(make(chan cluster.TransportEvent, 1)), memtransport.ErrClosed)
}

func TestNewTransportReusesClosedID(t *testing.T) {
	network := memtransport.NewNetwork()
	_, aEvents := startTransport(t, network, "a", 1, 16)
	old := network.NewTransport("b", 2)
	require.NoError(t, old.Start(make(chan cluster.TransportEvent, 16)))
	first := nextEvent(t, aEvents)
	requireLinkEvent(t, first, cluster.EventLinkUp, "b")

	require.Panics(t, func() { network.NewTransport("b", 3) }, "an open transport uses b")
	require.Panics(t, func() { network.NewTransport("", 3) }, "the node id is empty")

	// Closing b and creating it again is a restart. a gets the LinkDown of
	// the old link, then a new link with the new incarnation.
	require.NoError(t, old.Close())
	requireLinkEvent(t, nextEvent(t, aEvents), cluster.EventLinkDown, "b")
	_, _ = startTransport(t, network, "b", 3, 16)
	second := nextEvent(t, aEvents)
	requireLinkEvent(t, second, cluster.EventLinkUp, "b")
	assert.Equal(t, uint64(3), second.Incarnation)
	assert.NotEqual(t, first.Link, second.Link)
}
