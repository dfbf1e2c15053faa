package cluster_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// peerLog records the peer callbacks of one cluster layer.
type peerLog struct {
	mu     sync.Mutex
	events []string
}

func (l *peerLog) add(event string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event)
}

func (l *peerLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func TestClusterLibraryAPI(t *testing.T) {
	portA, portB := freePort(t), freePort(t)
	a := newLayerNode(t, "a", portA, []string{loopbackAddr(portB)})
	b := newLayerNode(t, "b", portB, nil)
	var events peerLog
	a.cluster.OnPeerConnected(func(peer string) { events.add("up " + peer) })
	a.cluster.OnPeerDisconnected(func(peer string) { events.add("down " + peer) })

	// A node that knows a peer address is not ready until it hears one.
	require.NoError(t, a.cluster.Start())
	require.False(t, a.cluster.Ready(), "a knows b's address but has not heard b")
	require.Equal(t, 0, a.cluster.ConnectedPeerCount())

	require.NoError(t, b.cluster.Start())
	require.Eventually(t, func() bool { return a.cluster.Ready() && a.cluster.ConnectedPeerCount() == 1 },
		5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"up b"}, events.snapshot())
	peers := a.cluster.Peers()
	require.Len(t, peers, 1)
	require.Equal(t, "b", peers[0].ID)
	require.True(t, peers[0].Connected)

	// b leaves: a's callback reports it down at once, and a is not ready.
	require.NoError(t, b.cluster.Close())
	require.NoError(t, b.cluster.Close(), "Close is safe to call twice")
	require.Eventually(t, func() bool { return len(events.snapshot()) == 2 }, testPeerTimeout, 5*time.Millisecond)
	require.Equal(t, []string{"up b", "down b"}, events.snapshot())
	require.Equal(t, 0, a.cluster.ConnectedPeerCount())
	require.False(t, a.cluster.Ready())
}
