package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/memtransport"
	"github.com/wscluster/wscluster/metrics"
)

// blockingHandler blocks the loop in Deliver until release is closed.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
}

func (h *blockingHandler) Deliver(backplane.Message) {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
}

func newReviewCluster(t *testing.T, network *memtransport.Network, id string) *cluster.Cluster {
	ids := backplane.NewIDs(id)
	c, err := cluster.New(cluster.Config{IDs: ids, NodeID: id, Metrics: metrics.New(),
		Transport: network.NewTransport(id, ids.Incarnation()), LeaveGrace: 50 * time.Millisecond,
		HeartbeatInterval: 10 * time.Millisecond, PeerTimeout: 5 * time.Second})
	require.NoError(t, err)
	return c
}

// After b's leave, a must not count b alive again: nothing may follow the leave.
func TestNothingAfterLeave(t *testing.T) {
	for round := 0; round < 40; round++ {
		network := memtransport.NewNetwork()
		a := newReviewCluster(t, network, "a")
		b := newReviewCluster(t, network, "b")
		handler := &blockingHandler{entered: make(chan struct{}, 1), release: make(chan struct{})}
		b.Attach(handler)
		var events peerLog
		a.OnPeerConnected(func(peer string) { events.add("up " + peer) })
		a.OnPeerDisconnected(func(peer string) { events.add("down " + peer) })
		require.NoError(t, a.Start())
		require.NoError(t, b.Start())
		require.Eventually(t, func() bool { return a.ConnectedPeerCount() == 1 && b.ConnectedPeerCount() == 1 },
			2*time.Second, time.Millisecond)

		// b's loop blocks in Deliver long enough for its ticker to fire,
		// and Close runs meanwhile.
		require.NoError(t, a.Publish(context.Background(), backplane.Message{ID: "m", Channel: "c"}))
		<-handler.entered
		closed := make(chan struct{})
		go func() { _ = b.Close(); close(closed) }()
		time.Sleep(30 * time.Millisecond)
		close(handler.release)
		<-closed

		require.Eventually(t, func() bool { return len(events.snapshot()) >= 2 }, 2*time.Second, time.Millisecond)
		time.Sleep(50 * time.Millisecond)
		require.Equal(t, []string{"up b", "down b"}, events.snapshot(), "round %d", round)
		require.Equal(t, 0, a.ConnectedPeerCount(), "round %d: a counts b alive after its leave", round)
		require.NoError(t, a.Close())
	}
}
