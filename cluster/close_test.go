package cluster_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/memtransport"
	"github.com/wscluster/wscluster/metrics"
)

// A Publish that races Close must return: either taken or ErrClosed.
func TestPublishRacingCloseReturns(t *testing.T) {
	for round := 0; round < 300; round++ {
		network := memtransport.NewNetwork()
		ids := backplane.NewIDs("a")
		c, err := cluster.New(cluster.Config{IDs: ids, NodeID: "a", Metrics: metrics.New(),
			Transport: network.NewTransport("a", ids.Incarnation()), LeaveGrace: time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, c.Start())

		var wg sync.WaitGroup
		stuck := make(chan struct{}, 64)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					err := c.Publish(ctx, backplane.Message{ID: "m", Channel: "c"})
					timedOut := ctx.Err() != nil
					cancel()
					if err != nil {
						if timedOut {
							stuck <- struct{}{}
						}
						return
					}
				}
			}()
		}
		time.Sleep(time.Millisecond)
		require.NoError(t, c.Close())
		wg.Wait()
		require.Empty(t, stuck, "round %d: a Publish submitted during Close waited for its deadline", round)
	}
}

// Close after a failed Start must return, because no loop ever ran.
func TestCloseAfterFailedStartReturns(t *testing.T) {
	network := memtransport.NewNetwork()
	ids := backplane.NewIDs("a")
	transport := network.NewTransport("a", ids.Incarnation())
	require.NoError(t, transport.Close())
	c, err := cluster.New(cluster.Config{IDs: ids, NodeID: "a", Metrics: metrics.New(), Transport: transport})
	require.NoError(t, err)
	require.Error(t, c.Start(), "the transport is closed")

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close after a failed Start blocked for 2s")
	}
}
