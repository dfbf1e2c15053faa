package core

import (
	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// EffectKind is the type of an Effect.
type EffectKind uint8

// Effect kinds.
const (
	// EffectDeliver hands Message to the local subscribers.
	EffectDeliver EffectKind = iota + 1
	// EffectApplyPresence applies Deltas of node Node to the local roster.
	EffectApplyPresence
	// EffectSyncPresence makes Entries the complete set of node Node's
	// roster entries; nil Entries purge the node.
	EffectSyncPresence
	// EffectPeerUp reports that node Node is alive.
	EffectPeerUp
	// EffectPeerDown reports that node Node is down.
	EffectPeerDown
)

func (k EffectKind) String() string {
	switch k {
	case EffectDeliver:
		return "deliver"
	case EffectApplyPresence:
		return "apply_presence"
	case EffectSyncPresence:
		return "sync_presence"
	case EffectPeerUp:
		return "peer_up"
	case EffectPeerDown:
		return "peer_down"
	}
	return "unknown"
}

// Reasons a peer is down, the Reason of an EffectPeerDown.
const (
	// DownTimeout: the peer was silent for the peer timeout.
	DownTimeout = "timeout"
	// DownLeft: the peer said it is shutting down.
	DownLeft = "left"
	// DownRestarted: a new incarnation of the peer appeared.
	DownRestarted = "restarted"
)

// Effect is one local consequence of an input, to be carried out in order.
type Effect struct {
	Kind EffectKind
	Node string
	// Reason says why a peer is down (EffectPeerDown).
	Reason  string
	Message backplane.Message
	Deltas  []backplane.PresenceDelta
	Entries []backplane.PresenceEntry
}

// Send is one envelope for one peer. An envelope meant for every peer is one
// shared *wire.Envelope in several Sends, so a broadcast backplane can send
// it once; receivers must not modify envelopes.
type Send struct {
	To       string
	Envelope *wire.Envelope
}

// Counters are events worth a metric, accumulated since the last Drain.
type Counters struct {
	DuplicatesDropped   int
	ReplayRequests      int
	MessagesReplayed    int
	ReplayLosses        int
	SyncEntriesSent     int
	SyncEntriesReceived int
}

// Output is everything the driver must do after feeding inputs: send the
// envelopes, carry out the effects in order and count the counters.
type Output struct {
	Sends    []Send
	Effects  []Effect
	Counters Counters
}

// Empty reports whether there is nothing to do.
func (o *Output) Empty() bool {
	return len(o.Sends) == 0 && len(o.Effects) == 0 && o.Counters == (Counters{})
}
