// Package backplane defines the boundary between the client protocols
// (pub/sub and presence) and whatever carries their traffic between nodes.
//
// The protocols call a Backplane for every publish and every presence
// change. An engine calls back into the protocols through MessageHandler and
// PresenceHandler, which the protocols implement and an engine learns about
// through its Attach method. Local is the engine of a single node
// (--engine none). The cluster engines implement the same interface, so the
// protocol code is the same on one node and on many.
package backplane

import (
	"context"
	"encoding/json"
	"errors"
)

// ErrUnavailable is returned by Publish when the backplane cannot take a
// message. The protocol answers error 1005, and the message must be
// delivered nowhere, including on this node.
var ErrUnavailable = errors.New("backplane unavailable")

// ErrUnconfirmed is returned by Publish when the backplane may have taken a
// message but did not confirm it in time, like a PUBLISH whose reply timed
// out: Redis may run it later. The protocol returns error 1007. The message
// is delivered on this node and may be delivered on others.
var ErrUnconfirmed = errors.New("backplane did not confirm the message")

// Message is one publish.
type Message struct {
	// ID is the msg_id, unique in the cluster (see IDs).
	ID string
	// Channel is the channel name, already validated.
	Channel string
	// Data is the published JSON value, exactly as the publisher sent it.
	Data json.RawMessage
	// QoS is 0 or 1.
	QoS int
}

// PresenceEntry is one connection's membership in one channel's roster.
type PresenceEntry struct {
	Channel string
	Member  string
	// Node is the --node-id of the node holding the connection.
	Node string
	// Conn is the connection id, unique in the cluster.
	Conn string
	// Info is the member info as compact JSON; never empty ("{}" at least).
	Info json.RawMessage
}

// PresenceOp says whether a PresenceDelta adds or removes an entry.
type PresenceOp uint8

// Presence operations.
const (
	// PresenceJoin adds an entry, or replaces the info of an existing one.
	PresenceJoin PresenceOp = iota + 1
	// PresenceLeave removes an entry; removing an absent entry does nothing.
	PresenceLeave
)

// PresenceDelta is one change of one connection's presence.
type PresenceDelta struct {
	Op    PresenceOp
	Entry PresenceEntry
}

// Backplane carries publishes and presence changes to the other nodes.
type Backplane interface {
	// NewMessageID returns a msg_id that no node of the cluster has used.
	NewMessageID() string

	// Publish hands msg to the other nodes and returns once the backplane
	// has taken it (mesh: stored in the replay buffer; redis: PUBLISH
	// answered). It returns an error wrapping ErrUnavailable when the
	// message was not taken, and then no node delivers it.
	Publish(ctx context.Context, msg Message) error

	// DeliversOwnPublishes reports whether this node's own publishes come
	// back through MessageHandler.Deliver, as under a total order. When it
	// is false, the protocol delivers its own publishes locally right after
	// Publish returns.
	DeliversOwnPublishes() bool

	// Subscribe returns once every message published on channel by any
	// connected node after the return will be delivered to this node.
	Subscribe(ctx context.Context, channel string) error

	// Unsubscribe tells the backplane that this node has no subscriber of
	// channel left.
	Unsubscribe(channel string)

	// PresenceChanged replicates a change of a local connection's
	// presence. It must not block, because the presence protocol calls it
	// under its lock to keep changes in order.
	PresenceChanged(delta PresenceDelta)

	// Ready reports whether the backplane currently works, as /readyz
	// shows it.
	Ready() bool
}

// AsyncPublisher is a Backplane that takes a publish without making its
// caller wait, so that one connection can have several publishes in flight
// and the node can send them to its peers together.
type AsyncPublisher interface {
	// PublishAsync does what Publish does and calls done with the result
	// Publish would have returned. done is called exactly once, maybe
	// before PublishAsync returns, and must not block. On one node, the
	// messages that are taken keep the order of the calls, and so do the
	// calls of their done.
	PublishAsync(ctx context.Context, msg Message, done func(error))
}

// MessageHandler receives the publishes of other nodes. The pub/sub protocol
// implements it.
type MessageHandler interface {
	// Deliver queues msg to this node's subscribers of msg.Channel.
	Deliver(msg Message)
}

// PresenceHandler is the roster that a cluster engine keeps in sync with the
// other nodes. The presence protocol implements it.
type PresenceHandler interface {
	// ApplyRemote applies changes made by the connections of another node.
	ApplyRemote(node string, deltas []PresenceDelta)

	// SyncNode makes entries the complete set of node's entries: entries
	// of node not in the set are removed and new ones added, with the
	// events that follow. SyncNode(node, nil) purges a node that is down.
	SyncNode(node string, entries []PresenceEntry)

	// LocalEntries returns a snapshot of the entries of this node's own
	// connections, for a full sync to another node.
	LocalEntries() []PresenceEntry
}

// PeerStatus describes one peer node as /cluster shows it.
type PeerStatus struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Connected is whether the peer was heard within the peer timeout; the
	// count of connected peers is /cluster's connected_peers.
	Connected bool `json:"connected"`
	// Linked is whether a transport link to the peer is open. A link can be
	// open to a silent peer, and a peer can be alive between two links.
	Linked bool `json:"linked"`
}

// PeerReporter is implemented by engines that have peers. A backplane that
// does not implement it has none, like Local.
type PeerReporter interface {
	Peers() []PeerStatus
	ConnectedPeerCount() int
}
