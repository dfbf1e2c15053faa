// Package wire defines the envelopes that nodes exchange over a cluster
// backplane and their binary encoding.
//
// Every envelope names its origin node and the origin's incarnation, a
// random number drawn at each start, so that a restarted node is never
// mistaken for its earlier run. Publishes also carry a sequence number per
// origin incarnation, from 1 without gaps, which lets a receiver drop
// duplicates and ask for exactly the publishes it missed.
package wire

import (
	"time"

	"github.com/wscluster/wscluster/backplane"
)

// Kind is the type of an envelope.
type Kind uint8

// Envelope kinds.
const (
	// KindHello is the first envelope on a new link in each direction. It
	// tells the other node where to resume its publishes: ResumeIncarnation
	// and ResumeSeq are the last publish of the receiver that the sender
	// has delivered, and Uptime bounds how old a replayed publish may be.
	KindHello Kind = iota + 1
	// KindPublish carries one publish with its Seq.
	KindPublish
	// KindPresence carries presence deltas of the origin's connections.
	KindPresence
	// KindSyncChunk carries part of a full presence sync of the origin's
	// connections. SyncID groups the chunks; Last marks the final one.
	KindSyncChunk
	// KindSyncRequest asks the receiver for a full presence sync, sent when
	// a peer that was declared down is heard again.
	KindSyncRequest
	// KindHeartbeat shows the origin is alive.
	KindHeartbeat
	// KindLeave says the origin is shutting down; receivers purge its
	// presence members at once.
	KindLeave
	// KindPeers carries the advertised addresses the origin knows, for
	// peer exchange.
	KindPeers
)

func (k Kind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindPublish:
		return "publish"
	case KindPresence:
		return "presence"
	case KindSyncChunk:
		return "sync_chunk"
	case KindSyncRequest:
		return "sync_request"
	case KindHeartbeat:
		return "heartbeat"
	case KindLeave:
		return "leave"
	case KindPeers:
		return "peers"
	}
	return "unknown"
}

// Envelope is one message between two nodes. Only the fields of its Kind
// are set.
type Envelope struct {
	Kind        Kind
	Origin      string
	Incarnation uint64

	// Seq numbers the publishes of one origin incarnation (KindPublish).
	Seq uint64
	// Message is the publish (KindPublish).
	Message backplane.Message

	// Deltas are presence changes (KindPresence).
	Deltas []backplane.PresenceDelta

	// SyncID identifies one full sync; Entries is one chunk of it and Last
	// marks its final chunk (KindSyncChunk).
	SyncID  uint64
	Entries []backplane.PresenceEntry
	Last    bool

	// ResumeIncarnation and ResumeSeq are the receiver's incarnation and
	// the last of its publishes the sender delivered (KindHello).
	ResumeIncarnation uint64
	ResumeSeq         uint64
	// Uptime is how long the sender has been running (KindHello). The
	// receiver replays only publishes younger than that, so a node that
	// just started does not get messages from before it existed.
	Uptime time.Duration

	// Peers are advertised host:port addresses (KindPeers).
	Peers []string
}
