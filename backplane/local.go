package backplane

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"sync/atomic"
)

// IDs generates ids that are unique in a cluster: the node id, this
// process's incarnation and a counter. Node ids cannot contain ':', so the
// parts never run together, and the random incarnation keeps a restarted
// node from reusing the ids of its previous run.
type IDs struct {
	prefix  string
	counter atomic.Uint64
	conns   atomic.Uint64
	inc     uint64
}

// NewIDs returns a generator for node nodeID with a fresh random incarnation.
func NewIDs(nodeID string) *IDs {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24.
	inc := binary.BigEndian.Uint64(b[:]) >> 16
	return &IDs{prefix: nodeID + ":" + strconv.FormatUint(inc, 36) + ":", inc: inc}
}

// Incarnation returns the random number that tells this run of the node from
// its earlier runs.
func (g *IDs) Incarnation() uint64 { return g.inc }

// MessageID returns a new msg_id.
func (g *IDs) MessageID() string {
	return g.prefix + strconv.FormatUint(g.counter.Add(1), 36)
}

// ConnID returns a new connection id.
func (g *IDs) ConnID() string {
	return g.prefix + "c" + strconv.FormatUint(g.conns.Add(1), 36)
}

// Local is the backplane of a node that runs alone (--engine none). It is
// always ready and sends nothing anywhere.
type Local struct {
	ids *IDs
}

// NewLocal returns a Local backplane that draws message ids from ids.
func NewLocal(ids *IDs) *Local { return &Local{ids: ids} }

// Attach accepts the protocols' handlers for symmetry with the cluster
// engines. A single node never receives anything, so they are not kept.
func (l *Local) Attach(any) {}

// NewMessageID implements Backplane.
func (l *Local) NewMessageID() string { return l.ids.MessageID() }

// Publish implements Backplane. There is no other node to send to.
func (l *Local) Publish(context.Context, Message) error { return nil }

// PublishAsync implements AsyncPublisher: done runs before it returns.
func (l *Local) PublishAsync(_ context.Context, _ Message, done func(error)) { done(nil) }

// DeliversOwnPublishes implements Backplane.
func (l *Local) DeliversOwnPublishes() bool { return false }

// Subscribe implements Backplane. Local delivery is in effect at once.
func (l *Local) Subscribe(context.Context, string) error { return nil }

// Unsubscribe implements Backplane.
func (l *Local) Unsubscribe(string) {}

// PresenceChanged implements Backplane.
func (l *Local) PresenceChanged(PresenceDelta) {}

// Ready implements Backplane.
func (l *Local) Ready() bool { return true }

var _ Backplane = (*Local)(nil)
var _ AsyncPublisher = (*Local)(nil)
