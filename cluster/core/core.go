// Package core is the deterministic state machine of a wscluster node's
// cluster layer: peer liveness, publish sequencing, deduplication, replay
// and presence replication. It does no I/O and reads no clock. One
// goroutine feeds it inputs (links, envelopes, ticks, local publishes and
// presence changes, each with the current time) and carries out the Output
// it returns: envelopes to send and effects to apply, in order. The same
// inputs always give the same outputs, which lets simulation tests run
// thousands of fault schedules and replay a failing seed exactly.
//
// The core assumes a full mesh without relays: every envelope of origin X
// arrives on the link to X, in the order X sent it.
package core

import (
	"sort"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// Config configures a Node. Zero fields take the documented defaults.
type Config struct {
	// NodeID is this node's id. Required.
	NodeID string
	// Incarnation is a random number drawn at each start. Required.
	Incarnation uint64
	// HeartbeatInterval is the time between heartbeats. Default 1s.
	HeartbeatInterval time.Duration
	// PeerTimeout is the silence after which a peer is down. Default 3s.
	PeerTimeout time.Duration
	// ReplayMaxMessages bounds the replay buffer by count. Default 65536.
	ReplayMaxMessages int
	// ReplayMaxAge bounds the replay buffer by age. Default 60s.
	ReplayMaxAge time.Duration
	// SyncChunkBytes bounds the entry bytes of one presence sync chunk, so
	// every chunk fits a peer frame. Default 32 KiB.
	SyncChunkBytes int
	// Broadcast makes publishes, presence deltas, heartbeats and the leave
	// one Send to Everyone, for a backplane that reaches every node with one
	// message (Redis Pub/Sub). They go out even with no peer known, so a
	// node hears its own heartbeats and new nodes hear the others. Hello,
	// syncs and replays stay addressed to one peer.
	Broadcast bool
}

// Everyone is the To of a Send meant for every node, in Broadcast mode.
const Everyone = ""

func (c *Config) setDefaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 3 * time.Second
	}
	if c.ReplayMaxMessages <= 0 {
		c.ReplayMaxMessages = 65536
	}
	if c.ReplayMaxAge <= 0 {
		c.ReplayMaxAge = 60 * time.Second
	}
	if c.SyncChunkBytes <= 0 {
		c.SyncChunkBytes = 32 << 10
	}
}

// replayMargin widens the age window of a replay to a peer, because the
// peer measured its uptime a little before this node reads it.
const replayMargin = time.Second

// chanConn identifies one presence entry of a node.
type chanConn struct {
	channel, conn string
}

// Node is the cluster state of one node. It is not safe for concurrent use.
type Node struct {
	cfg     Config
	started time.Time

	seq    uint64
	replay replayBuffer

	// local mirrors this node's own presence entries, for full syncs.
	local  map[chanConn]backplane.PresenceEntry
	syncID uint64

	peers map[string]*peer
	// left is set by Leave; nothing is sent after it.
	left bool
	// nextHeartbeat is when the next heartbeat goes out.
	nextHeartbeat time.Time

	out Output
}

// New returns a Node that starts at time now.
func New(cfg Config, now time.Time) *Node {
	cfg.setDefaults()
	return &Node{
		cfg:           cfg,
		started:       now,
		replay:        replayBuffer{maxItems: cfg.ReplayMaxMessages, maxAge: cfg.ReplayMaxAge},
		local:         make(map[chanConn]backplane.PresenceEntry),
		peers:         make(map[string]*peer),
		nextHeartbeat: now.Add(cfg.HeartbeatInterval),
	}
}

// Drain returns the output accumulated since the last Drain and clears it.
func (n *Node) Drain() Output {
	out := n.out
	n.out = Output{}
	return out
}

func (n *Node) send(to string, env *wire.Envelope) {
	if n.left {
		// After the leave, a heartbeat or a sync would make the peers
		// count this node alive again and keep its members.
		return
	}
	env.Origin = n.cfg.NodeID
	env.Incarnation = n.cfg.Incarnation
	n.out.Sends = append(n.out.Sends, Send{To: to, Envelope: env})
}

func (n *Node) effect(e Effect) {
	n.out.Effects = append(n.out.Effects, e)
}

// Publish sequences a local publish, keeps it for replay and sends it to
// every peer that is streaming. It returns the envelope it sent.
func (n *Node) Publish(now time.Time, msg backplane.Message) *wire.Envelope {
	n.seq++
	n.replay.add(replayItem{seq: n.seq, at: now, msg: msg})
	env := &wire.Envelope{Kind: wire.KindPublish, Seq: n.seq, Message: msg}
	n.fanOut(env, func(p *peer) bool { return p.streaming })
	return env
}

// Retract removes a publish from the replay buffer, so that it is never
// replayed: its live send failed and its publisher was told so.
func (n *Node) Retract(seq uint64) {
	n.replay.retract(seq)
}

// fanOut sends env once to Everyone in Broadcast mode, else to every peer
// for which want is true.
func (n *Node) fanOut(env *wire.Envelope, want func(*peer) bool) {
	if n.cfg.Broadcast {
		n.send(Everyone, env)
		return
	}
	for _, id := range n.sortedPeerIDs() {
		if want(n.peers[id]) {
			n.send(id, env)
		}
	}
}

// PresenceChanged records a change of a local connection's presence and
// sends it to every linked peer. A peer without a link gets the change in
// the full sync that follows its next link.
func (n *Node) PresenceChanged(delta backplane.PresenceDelta) {
	key := chanConn{delta.Entry.Channel, delta.Entry.Conn}
	if delta.Op == backplane.PresenceJoin {
		n.local[key] = delta.Entry
	} else {
		delete(n.local, key)
	}
	env := &wire.Envelope{Kind: wire.KindPresence, Deltas: []backplane.PresenceDelta{delta}}
	n.fanOut(env, isLinked)
}

func isLinked(p *peer) bool { return p.linked }

// Leave tells every linked peer that this node is shutting down, so they
// purge its presence entries at once.
func (n *Node) Leave() {
	n.fanOut(&wire.Envelope{Kind: wire.KindLeave}, isLinked)
	n.left = true
}

// Tick sends heartbeats when due, declares silent peers down and ages the
// replay buffer. Drive it several times per heartbeat interval, because a
// purge is due within PeerTimeout plus one heartbeat.
func (n *Node) Tick(now time.Time) {
	if !now.Before(n.nextHeartbeat) {
		n.nextHeartbeat = now.Add(n.cfg.HeartbeatInterval)
		n.fanOut(&wire.Envelope{Kind: wire.KindHeartbeat}, isLinked)
	}
	for _, id := range n.sortedPeerIDs() {
		p := n.peers[id]
		if p.alive && now.Sub(p.lastHeard) > n.cfg.PeerTimeout {
			n.markDown(p, DownTimeout)
		}
	}
	n.replay.trim(now)
}

// sortedPeerIDs returns the peer ids in order, so that outputs never depend
// on map iteration order.
func (n *Node) sortedPeerIDs() []string {
	ids := make([]string, 0, len(n.peers))
	for id := range n.peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// LocalEntryCount returns the number of this node's own presence entries.
func (n *Node) LocalEntryCount() int { return len(n.local) }

// LastSeq returns the sequence number of this node's latest publish.
func (n *Node) LastSeq() uint64 { return n.seq }
