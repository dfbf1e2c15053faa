// Package cluster makes every publish and every presence change of a node
// reach the clients of every other node. It implements backplane.Backplane
// on top of a Transport (the mesh engine's TCP links today) and drives the
// deterministic state machine of package core from one goroutine.
//
// Use it as a library:
//
//	c, err := cluster.New(cluster.Config{IDs: ids, Transport: t, Metrics: m})
//	c.Attach(pubsubProtocol)
//	c.Attach(presenceProtocol)
//	err = c.Start()
//	defer c.Close()
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/core"
	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

// ErrClosed is returned by calls on a closed Cluster.
var ErrClosed = errors.New("cluster closed")

// ErrNotStarted is returned by Publish before Start: nothing would carry
// the message. An application that mounts server.Node.Handler itself must
// call server.Node.Start.
var ErrNotStarted = errors.New("cluster not started: call Start")

// EventKind is the type of a TransportEvent.
type EventKind uint8

// Transport event kinds.
const (
	EventLinkUp EventKind = iota + 1
	EventLinkDown
	EventEnvelope
	// EventEcho carries this node's own publish back from a broadcast
	// backplane, for delivery under a total order.
	EventEcho
)

// TransportEvent is one thing that happened on a transport. For one peer,
// a link's LinkUp comes before its envelopes and its LinkDown after them.
type TransportEvent struct {
	Kind EventKind
	Peer string
	// Link identifies the link, so late events of an old link are ignored.
	Link uint64
	// Incarnation is the peer's incarnation (EventLinkUp).
	Incarnation uint64
	// Envelope is set for EventEnvelope.
	Envelope *wire.Envelope
}

// Transport moves envelopes between this node and its peers. It counts the
// envelopes it writes and reads in wscluster_peer_envelopes_sent_total and
// wscluster_peer_envelopes_received_total, because only it knows what
// crossed the wire.
type Transport interface {
	// Start begins accepting and dialing, sending every event to events.
	Start(events chan<- TransportEvent) error
	// Send queues env to peer without blocking and reports whether a link
	// took it.
	Send(peer string, env *wire.Envelope) bool
	// Peers returns every known peer for status pages.
	Peers() []backplane.PeerStatus
	// KnownAddrCount returns how many peer addresses are known; a node
	// that knows none is a cluster of one and ready.
	KnownAddrCount() int
	// Close stops the transport. It is safe to call twice.
	Close() error
}

// Readier is a Transport that knows whether it works at all, like a Redis
// subscription whose own heartbeats come back. Such a transport alone
// decides Ready, and a publish while it is not ready is rejected.
type Readier interface {
	Ready() bool
}

// Acknowledger is a Transport that learns when the medium accepted an
// envelope, like Redis answering PUBLISH. Publish waits for that answer.
type Acknowledger interface {
	// Acknowledged waits until env, handed to Send, was accepted, and
	// returns an error when it was rejected or ctx ended first.
	Acknowledged(ctx context.Context, env *wire.Envelope) error
}

// Config configures a Cluster. Zero fields take the documented defaults.
type Config struct {
	// IDs supplies the node id, the incarnation and message ids. Required.
	IDs *backplane.IDs
	// NodeID is this node's id. Required.
	NodeID string
	// Transport carries envelopes. Required.
	Transport Transport
	// Metrics receives the cluster collectors. Required.
	Metrics *metrics.Metrics
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
	// HeartbeatInterval is the time between heartbeats. Default 1s.
	HeartbeatInterval time.Duration
	// PeerTimeout is the silence after which a peer is down. Default 3s.
	PeerTimeout time.Duration
	// ReplayMaxMessages and ReplayMaxAge bound the replay buffer.
	// Defaults 65536 messages and 60s.
	ReplayMaxMessages int
	ReplayMaxAge      time.Duration
	// Broadcast suits a Transport that reaches every node with one send:
	// see core.Config.Broadcast. Sends with To core.Everyone go to all.
	Broadcast bool
	// TotalOrder delivers this node's own publishes only when the
	// Transport echoes them (EventEcho), so every node sees one order per
	// channel. It needs a Transport that echoes, like Redis.
	TotalOrder bool
	// LeaveGrace is how long Close waits, once the leave envelope is
	// handed to the transport, before it closes the transport. Default
	// 200ms.
	LeaveGrace time.Duration
}

// input is one call into the core, run on the loop goroutine.
type input func(now time.Time)

// Cluster is one node's membership in a cluster.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	node *core.Node

	messages backplane.MessageHandler
	presence backplane.PresenceHandler

	inbox  *mailbox[input]
	events chan TransportEvent
	stop   chan struct{}
	done   chan struct{}

	// completions are the publishes the loop sequenced since its last
	// carryOut (loop only).
	completions []completion
	acks        *ackQueue

	ready atomic.Bool
	// lastEcho is the last own publish delivered as an echo (loop only).
	lastEcho  uint64
	connected atomic.Int64
	// alive holds the peers heard within the peer timeout, for Peers.
	aliveMu   sync.Mutex
	alive     map[string]bool
	started   atomic.Bool
	closeOnce sync.Once

	callbacksMu sync.Mutex
	onUp        []func(peer string)
	onDown      []func(peer string)
}

// New returns a Cluster. Attach the protocols, then call Start.
func New(cfg Config) (*Cluster, error) {
	if cfg.IDs == nil || cfg.NodeID == "" || cfg.Transport == nil || cfg.Metrics == nil {
		return nil, errors.New("cluster: Config.IDs, NodeID, Transport and Metrics are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LeaveGrace <= 0 {
		cfg.LeaveGrace = 200 * time.Millisecond
	}
	c := &Cluster{
		cfg:    cfg,
		log:    cfg.Logger,
		inbox:  newMailbox[input](),
		events: make(chan TransportEvent, 1024),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if ack, ok := cfg.Transport.(Acknowledger); ok {
		c.acks = newAckQueue(c, ack)
	}
	c.node = core.New(core.Config{
		NodeID:            cfg.NodeID,
		Incarnation:       cfg.IDs.Incarnation(),
		HeartbeatInterval: cfg.HeartbeatInterval,
		PeerTimeout:       cfg.PeerTimeout,
		ReplayMaxMessages: cfg.ReplayMaxMessages,
		ReplayMaxAge:      cfg.ReplayMaxAge,
		Broadcast:         cfg.Broadcast,
	}, time.Now())
	return c, nil
}

// Attach connects a protocol: a backplane.MessageHandler receives the
// publishes of other nodes and a backplane.PresenceHandler their presence.
// Call it before Start.
func (c *Cluster) Attach(protocol any) {
	if h, ok := protocol.(backplane.MessageHandler); ok {
		c.messages = h
	}
	if h, ok := protocol.(backplane.PresenceHandler); ok {
		c.presence = h
	}
}

// OnPeerConnected registers f to run, on the cluster's goroutine, when a
// peer comes up. f must not block.
func (c *Cluster) OnPeerConnected(f func(peer string)) {
	c.callbacksMu.Lock()
	defer c.callbacksMu.Unlock()
	c.onUp = append(c.onUp, f)
}

// OnPeerDisconnected registers f to run, on the cluster's goroutine, when a
// peer goes down. f must not block.
func (c *Cluster) OnPeerDisconnected(f func(peer string)) {
	c.callbacksMu.Lock()
	defer c.callbacksMu.Unlock()
	c.onDown = append(c.onDown, f)
}

// Start starts the transport and the loop.
func (c *Cluster) Start() error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("cluster: Start called twice")
	}
	// Members that joined before Start belong in the first full syncs.
	// Changes queued meanwhile are applied after this snapshot, and a join
	// or leave applied twice leaves the same entries.
	if c.presence != nil {
		for _, e := range c.presence.LocalEntries() {
			c.node.PresenceChanged(backplane.PresenceDelta{Op: backplane.PresenceJoin, Entry: e})
		}
		c.node.Drain()
	}
	if err := c.cfg.Transport.Start(c.events); err != nil {
		// No loop runs, so Close must not wait for one.
		c.started.Store(false)
		return fmt.Errorf("start transport: %w", err)
	}
	c.updateReady()
	if c.acks != nil {
		go c.acks.run()
	}
	go c.loop()
	return nil
}

// Close tells the peers this node is leaving, so they purge its presence
// members at once, then stops. It is safe to call twice.
func (c *Cluster) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.started.Load() {
			// The loop sends the leave and stops at once. A heartbeat or
			// a sync after the leave would make the peers count this node
			// alive again and keep its members until the peer timeout.
			c.submit(func(time.Time) { c.node.Leave() })
			close(c.stop)
			<-c.done
			time.Sleep(c.cfg.LeaveGrace)
		}
		err = c.cfg.Transport.Close()

		// A closed transport ends every wait for an acknowledgement, so
		// the queue empties and every publisher hears its outcome.
		if c.acks != nil && c.started.Load() {
			c.acks.close()
		}
	})
	return err
}

// Ready reports whether the backplane works. A Readier transport decides;
// otherwise no peer address is known, or at least one peer was heard within
// the peer timeout.
func (c *Cluster) Ready() bool {
	if r, ok := c.cfg.Transport.(Readier); ok {
		return c.started.Load() && r.Ready()
	}
	return c.ready.Load()
}

// ConnectedPeerCount returns the number of peers heard within the peer
// timeout.
func (c *Cluster) ConnectedPeerCount() int { return int(c.connected.Load()) }

// Peers returns the known peers. A peer is connected when it was heard
// within the peer timeout, the same rule as ConnectedPeerCount, and linked
// while the transport has a link to it.
func (c *Cluster) Peers() []backplane.PeerStatus {
	peers := c.cfg.Transport.Peers()
	c.aliveMu.Lock()
	defer c.aliveMu.Unlock()
	for i := range peers {
		peers[i].Linked = peers[i].Connected
		peers[i].Connected = c.alive[peers[i].ID]
	}
	return peers
}

// NewMessageID implements backplane.Backplane.
func (c *Cluster) NewMessageID() string { return c.cfg.IDs.MessageID() }

// DeliversOwnPublishes implements backplane.Backplane. It is true under
// TotalOrder, where own publishes arrive as echoes.
func (c *Cluster) DeliversOwnPublishes() bool { return c.cfg.TotalOrder }

// Subscribe implements backplane.Backplane. Every node sends every publish
// to every peer it streams to, so delivery from each connected node is in
// effect as soon as the local subscription exists.
func (c *Cluster) Subscribe(context.Context, string) error { return nil }

// Unsubscribe implements backplane.Backplane.
func (c *Cluster) Unsubscribe(string) {}

// PresenceChanged implements backplane.Backplane. It only queues the change,
// so it never blocks its caller.
func (c *Cluster) PresenceChanged(delta backplane.PresenceDelta) {
	c.submit(func(time.Time) { c.node.PresenceChanged(delta) })
}

var _ backplane.Backplane = (*Cluster)(nil)
var _ backplane.AsyncPublisher = (*Cluster)(nil)
var _ backplane.PeerReporter = (*Cluster)(nil)
