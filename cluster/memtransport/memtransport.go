// Package memtransport is an in-memory cluster.Transport. A Network
// connects the transports of several cluster layers in one process, without
// sockets, so that tests and programs that embed package cluster can run a
// whole cluster and cut or restore its links at will.
//
//	network := memtransport.NewNetwork()
//	ids := backplane.NewIDs("a")
//	c, err := cluster.New(cluster.Config{
//		IDs: ids, NodeID: "a", Metrics: metrics.New(),
//		Transport: network.NewTransport("a", ids.Incarnation()),
//	})
//
// Every pair of started, open transports whose link is not cut has exactly
// one link. Each transport hands its events to the cluster from one
// goroutine and one unbounded FIFO queue. The events of a link therefore
// keep the order that cluster.TransportEvent requires. Its EventLinkUp comes
// before its envelopes and its EventLinkDown after them, and the EventLinkUp
// of a later link to the same peer comes after that EventLinkDown.
package memtransport

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/wire"
)

// ErrClosed is returned by Start on a transport that was closed.
var ErrClosed = errors.New("memtransport: transport closed")

// ErrStarted is returned by a second call to Start.
var ErrStarted = errors.New("memtransport: Start called twice")

// ErrNilEvents is returned by Start when the events channel is nil.
var ErrNilEvents = errors.New("memtransport: Start needs a non-nil events channel")

// addrPrefix starts the address that Peers reports for an in-memory peer.
const addrPrefix = "mem:"

// Network connects in-memory transports. The zero value is not usable, so
// create one with NewNetwork. All methods are safe for concurrent use.
type Network struct {
	// mu guards every field below and the started and closed flags of
	// the transports. Send takes it for reading and topology changes take
	// it for writing. No holder waits on a channel, so Send stays short.
	mu sync.RWMutex
	// transports are the open transports by node id.
	transports map[string]*Transport
	// links are the current links by pair of node ids.
	links map[pairKey]*link
	// cuts are the pairs cut by Partition, and isolated the node ids cut
	// off by Isolate, until Heal.
	cuts     map[pairKey]struct{}
	isolated map[string]struct{}
	// lastLinkID is the id of the newest link, so that ids are never
	// reused in one Network.
	lastLinkID uint64
}

// pairKey names an unordered pair of node ids: low sorts before high.
type pairKey struct {
	low, high string
}

func newPairKey(a, b string) pairKey {
	if a > b {
		a, b = b, a
	}
	return pairKey{low: a, high: b}
}

// link is one bidirectional link between two transports.
type link struct {
	id   uint64
	ends [2]*Transport
}

// peerOf returns the end of l that is not t.
func (l *link) peerOf(t *Transport) *Transport {
	if l.ends[0] == t {
		return l.ends[1]
	}
	return l.ends[0]
}

// NewNetwork returns an empty Network.
func NewNetwork() *Network {
	return &Network{
		transports: make(map[string]*Transport),
		links:      make(map[pairKey]*link),
		cuts:       make(map[pairKey]struct{}),
		isolated:   make(map[string]struct{}),
	}
}

// NewTransport adds a transport for node nodeID with the given incarnation,
// which the peers receive in EventLinkUp. Pass a nonzero incarnation, such
// as backplane.IDs.Incarnation, because the cluster core reads 0 as "no
// incarnation known yet". The transport links to the others once Start is
// called.
//
// NewTransport panics when nodeID is empty or an open transport of the
// Network already uses it, because two nodes with one id would corrupt each
// other's state. A closed transport's id may be reused, which models a
// restart when the incarnation changes.
func (n *Network) NewTransport(nodeID string, incarnation uint64) *Transport {
	if nodeID == "" {
		panic("memtransport: NewTransport needs a non-empty node id")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, inUse := n.transports[nodeID]; inUse {
		panic(fmt.Sprintf("memtransport: node id %q is already used by an open transport of this network", nodeID))
	}
	t := &Transport{
		network:     n,
		id:          nodeID,
		incarnation: incarnation,
		log:         slog.Default().With("node", nodeID),
		queue:       eventQueue{wake: make(chan struct{}, 1)},
		done:        make(chan struct{}),
		stopped:     make(chan struct{}),
	}
	n.transports[nodeID] = t
	return t
}

// Partition cuts the link between nodes a and b. Both sides get
// EventLinkDown, and the envelopes of that link that their transports have
// not yet handed to the cluster are dropped, as on a cable that is pulled.
// No new link between a and b comes up until Heal. The ids need not belong
// to open transports: the cut also applies to transports created later.
// Partition does nothing when a equals b.
func (n *Network) Partition(a, b string) {
	if a == b {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	key := newPairKey(a, b)
	n.cuts[key] = struct{}{}
	n.cutLinkLocked(key)
}

// Isolate cuts node id off from every other node, as Partition does for
// each pair. The isolation also applies to transports created later, until
// Heal.
func (n *Network) Isolate(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[id] = struct{}{}
	for _, other := range n.sortedIDsLocked() {
		if other != id {
			n.cutLinkLocked(newPairKey(id, other))
		}
	}
}

// Heal removes every cut made by Partition and Isolate. Every pair of
// started, open transports without a link gets a new link with a new id,
// and both sides get its EventLinkUp.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cuts)
	clear(n.isolated)
	ids := n.sortedIDsLocked()
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			n.connectLocked(n.transports[a], n.transports[b])
		}
	}
}

// sortedIDsLocked returns the ids of the open transports in order, so that
// links come up in the same order on every run.
func (n *Network) sortedIDsLocked() []string {
	ids := make([]string, 0, len(n.transports))
	for id := range n.transports {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// isCutLocked reports whether Partition or Isolate forbids a link between
// a and b.
func (n *Network) isCutLocked(a, b string) bool {
	_, cut := n.cuts[newPairKey(a, b)]
	_, aIsolated := n.isolated[a]
	_, bIsolated := n.isolated[b]
	return cut || aIsolated || bIsolated
}

// connectLocked links a and b unless they are linked already, one of them
// is not started or their link is cut.
func (n *Network) connectLocked(a, b *Transport) {
	key := newPairKey(a.id, b.id)
	if _, linked := n.links[key]; linked || !a.started || !b.started || n.isCutLocked(a.id, b.id) {
		return
	}
	n.lastLinkID++
	l := &link{id: n.lastLinkID, ends: [2]*Transport{a, b}}
	n.links[key] = l

	// Both LinkUps are queued before the link is visible to Send, so
	// neither side can receive an envelope of the link before its LinkUp.
	a.queue.push(cluster.TransportEvent{Kind: cluster.EventLinkUp, Peer: b.id, Link: l.id, Incarnation: b.incarnation})
	b.queue.push(cluster.TransportEvent{Kind: cluster.EventLinkUp, Peer: a.id, Link: l.id, Incarnation: a.incarnation})
	a.log.Debug("in-memory link up", "peer", b.id, "link", l.id)
}

// cutLinkLocked removes the link of key, if any, and drops its envelopes
// that are still queued on both sides before it queues the LinkDowns.
func (n *Network) cutLinkLocked(key pairKey) {
	l := n.links[key]
	if l == nil {
		return
	}
	delete(n.links, key)
	for _, end := range l.ends {
		end.queue.dropEnvelopes(l.id)
		end.queue.push(cluster.TransportEvent{Kind: cluster.EventLinkDown, Peer: l.peerOf(end).id, Link: l.id})
	}
	l.ends[0].log.Debug("in-memory link cut", "peer", l.ends[1].id, "link", l.id)
}

// removeLocked takes t off the network. Its peers get EventLinkDown after
// the envelopes that t sent them before, as after an orderly TCP close, so
// that a leave envelope sent just before Close still arrives.
func (n *Network) removeLocked(t *Transport) {
	delete(n.transports, t.id)
	for key, l := range n.links {
		if l.ends[0] != t && l.ends[1] != t {
			continue
		}
		delete(n.links, key)
		peer := l.peerOf(t)
		peer.queue.push(cluster.TransportEvent{Kind: cluster.EventLinkDown, Peer: t.id, Link: l.id})
		t.log.Debug("in-memory link closed", "peer", peer.id, "link", l.id)
	}
}

// Transport is one node's endpoint on a Network. It implements
// cluster.Transport.
//
// Unlike the mesh transport, it updates no metrics: it does not count
// envelopes in wscluster_peer_envelopes_sent_total or
// wscluster_peer_envelopes_received_total, because it has no
// metrics.Metrics to count them in.
type Transport struct {
	network     *Network
	id          string
	incarnation uint64
	log         *slog.Logger

	// started and closed are guarded by network.mu.
	started bool
	closed  bool

	queue eventQueue
	// done is closed by Close to stop the delivery goroutine, which closes
	// stopped when it returns.
	done      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

var _ cluster.Transport = (*Transport)(nil)

// Start links the transport to every other started transport of the
// network whose link is not cut, and starts the goroutine that sends every
// event to events in order. It returns ErrNilEvents for a nil channel,
// ErrStarted when called twice and ErrClosed after Close.
func (t *Transport) Start(events chan<- cluster.TransportEvent) error {
	if events == nil {
		return ErrNilEvents
	}
	n := t.network
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case t.closed:
		return ErrClosed
	case t.started:
		return ErrStarted
	}
	t.started = true
	go t.deliver(events)

	for _, id := range n.sortedIDsLocked() {
		if id != t.id {
			n.connectLocked(t, n.transports[id])
		}
	}
	return nil
}

// deliver hands the queued events to the cluster one at a time until Close.
func (t *Transport) deliver(events chan<- cluster.TransportEvent) {
	defer close(t.stopped)
	for {
		ev, ok := t.queue.pop()
		if !ok {
			select {
			case <-t.queue.wake:
				continue
			case <-t.done:
				return
			}
		}
		select {
		case events <- ev:
		case <-t.done:
			return
		}
	}
}

// Send queues a copy of env to peer and reports whether a link took it. It
// never waits for the receiver, because the receiving queue is unbounded.
// It waits only while Partition, Isolate, Heal, Start or Close changes the
// links. It returns false when there is no link to peer, and also when env
// cannot make a round trip through the wire codec, which it logs as an
// error.
//
// The copy goes through wire.Append and wire.Decode, so the receiver never
// shares memory with the sender, and an envelope that the TCP transport
// could not carry fails here too.
func (t *Transport) Send(peer string, env *wire.Envelope) bool {
	copied, err := copyEnvelope(env)
	if err != nil {
		t.log.Error("in-memory send failed: envelope cannot be encoded", "peer", peer, "kind", env.Kind, "err", err)
		return false
	}

	n := t.network
	n.mu.RLock()
	defer n.mu.RUnlock()
	l := n.links[newPairKey(t.id, peer)]
	if l == nil || n.transports[t.id] != t {
		return false
	}
	l.peerOf(t).queue.push(cluster.TransportEvent{Kind: cluster.EventEnvelope, Peer: t.id, Link: l.id, Envelope: copied})
	return true
}

// copyEnvelope returns a deep copy of env made by encoding and decoding it.
func copyEnvelope(env *wire.Envelope) (*wire.Envelope, error) {
	copied, err := wire.Decode(wire.Append(nil, env))
	if err != nil {
		return nil, fmt.Errorf("copy %s envelope: %w", env.Kind, err)
	}
	return copied, nil
}

// Peers returns the other open transports of the network sorted by id, with
// the address "mem:<id>" and Connected set while a link to them is up. It
// returns an empty slice after Close.
func (t *Transport) Peers() []backplane.PeerStatus {
	n := t.network
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := []backplane.PeerStatus{}
	if n.transports[t.id] != t {
		return out
	}
	for _, id := range n.sortedIDsLocked() {
		if id == t.id {
			continue
		}
		_, linked := n.links[newPairKey(t.id, id)]
		out = append(out, backplane.PeerStatus{ID: id, Addr: addrPrefix + id, Connected: linked})
	}
	return out
}

// KnownAddrCount returns the number of other open transports on the
// network, whether they are started, linked or cut off. It returns 0 after
// Close.
func (t *Transport) KnownAddrCount() int {
	n := t.network
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.transports[t.id] != t {
		return 0
	}
	return len(n.transports) - 1
}

// Close takes the transport off the network and stops its goroutine. Its
// peers get EventLinkDown after the envelopes it sent them. Close returns
// once the goroutine has stopped, and nothing is sent to the events
// channel after that. It always returns nil and is safe to call twice.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		n := t.network
		n.mu.Lock()
		t.closed = true
		started := t.started
		n.removeLocked(t)
		n.mu.Unlock()

		close(t.done)
		if started {
			<-t.stopped
		}
	})
	return nil
}

// eventQueue is an unbounded FIFO queue of events. wake holds a token
// whenever an event was pushed since the consumer last waited.
type eventQueue struct {
	mu     sync.Mutex
	events []cluster.TransportEvent
	wake   chan struct{}
}

func (q *eventQueue) push(ev cluster.TransportEvent) {
	q.mu.Lock()
	q.events = append(q.events, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop removes and returns the oldest event, or reports false when the
// queue is empty.
func (q *eventQueue) pop() (cluster.TransportEvent, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.events) == 0 {
		return cluster.TransportEvent{}, false
	}
	ev := q.events[0]
	// Clear the slot, so the envelope can be collected before the backing
	// array is reallocated.
	q.events[0] = cluster.TransportEvent{}
	q.events = q.events[1:]
	return ev, true
}

// dropEnvelopes removes the queued envelopes of link. Link events stay,
// because the LinkDown queued next must follow the link's LinkUp.
func (q *eventQueue) dropEnvelopes(link uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	remaining := q.events[:0]
	for _, ev := range q.events {
		if ev.Kind != cluster.EventEnvelope || ev.Link != link {
			remaining = append(remaining, ev)
		}
	}
	clear(q.events[len(remaining):])
	q.events = remaining
}
