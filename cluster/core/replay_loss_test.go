package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// A node that joins a cluster whose buffer was trimmed missed nothing: the
// trimmed publishes are older than it. No replay loss may be counted.
func TestNewPeerNoSpuriousReplayLoss(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := New(Config{NodeID: "a", Incarnation: 1, ReplayMaxMessages: 10}, t0)
	for i := 0; i < 100; i++ {
		a.Publish(t0, backplane.Message{ID: "m"})
	}
	a.Drain()

	// b starts at t0+10s and links at once.
	now := t0.Add(10 * time.Second)
	a.LinkUp(now, "b", 2, 1)
	b := New(Config{NodeID: "b", Incarnation: 2}, now)
	b.LinkUp(now, "a", 1, 1)
	hello := b.Drain().Sends[0].Envelope
	require.Equal(t, wire.KindHello, hello.Kind)
	a.Receive(now, "b", 1, hello)
	out := a.Drain()
	require.Zero(t, out.Counters.MessagesReplayed, "nothing older than b is replayed")
	require.Zero(t, out.Counters.ReplayLosses, "b missed nothing, yet losses are counted")
}
