package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/memtransport"
	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

// orderedRecorder records the ids of delivered messages in order.
type orderedRecorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *orderedRecorder) Deliver(msg backplane.Message) { r.add(msg.ID) }

func (r *orderedRecorder) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
}

func (r *orderedRecorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// Publishes handed over without waiting are sequenced, reported and
// delivered in the order of the calls.
func TestPublishAsyncKeepsOrder(t *testing.T) {
	network := memtransport.NewNetwork()
	a := newReviewCluster(t, network, "a")
	b := newReviewCluster(t, network, "b")
	received := &orderedRecorder{}
	b.Attach(received)
	require.NoError(t, a.Start())
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	require.Eventually(t, func() bool { return a.ConnectedPeerCount() == 1 && b.ConnectedPeerCount() == 1 },
		2*time.Second, time.Millisecond)

	const count = 2000
	var want []string
	reported := &orderedRecorder{}
	for i := range count {
		id := fmt.Sprintf("m%d", i)
		want = append(want, id)
		a.PublishAsync(context.Background(), backplane.Message{ID: id, Channel: "c"}, func(err error) {
			assert.NoError(t, err, "publish %s", id)
			reported.add(id)
		})
	}
	require.Eventually(t, func() bool { return len(received.snapshot()) == count }, 5*time.Second, time.Millisecond,
		"b received %d of %d publishes", len(received.snapshot()), count)
	require.Equal(t, want, reported.snapshot(), "outcomes reported out of call order")
	require.Equal(t, want, received.snapshot(), "b received the publishes out of order")
}

// ackingTransport is an in-memory transport whose medium acknowledges
// publishes like Redis does. Send fails for messages whose id starts with
// "unsent", and the medium rejects those whose id starts with "reject"
// after a delay, so that later publishes are acknowledged first. Like Redis, it
// takes a message for every node (peer "") in one Send.
type ackingTransport struct {
	*memtransport.Transport

	mu      sync.Mutex
	results map[*wire.Envelope]chan error
}

func (t *ackingTransport) Send(peer string, env *wire.Envelope) bool {
	if env.Kind != wire.KindPublish {
		return t.Transport.Send(peer, env)
	}
	id := env.Message.ID
	if strings.HasPrefix(id, "unsent") {
		return false
	}
	result := make(chan error, 1)
	t.mu.Lock()
	t.results[env] = result
	t.mu.Unlock()
	if strings.HasPrefix(id, "reject") {
		time.AfterFunc(20*time.Millisecond, func() { result <- errors.New("medium rejected " + id) })
	} else {
		result <- nil
	}
	return peer == "" || t.Transport.Send(peer, env)
}

// Acknowledged waits for env's result, or for ctx when env was never sent.
func (t *ackingTransport) Acknowledged(ctx context.Context, env *wire.Envelope) error {
	t.mu.Lock()
	result := t.results[env]
	delete(t.results, env)
	t.mu.Unlock()
	if result == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Over an acknowledging medium, outcomes come in call order even when the
// medium acknowledges out of order, and a publish whose send failed fails
// at once instead of at its deadline.
func TestPublishAsyncReportsAcknowledgementsInOrder(t *testing.T) {
	network := memtransport.NewNetwork()
	ids := backplane.NewIDs("a")
	transport := &ackingTransport{Transport: network.NewTransport("a", ids.Incarnation()), results: map[*wire.Envelope]chan error{}}
	a, err := cluster.New(cluster.Config{IDs: ids, NodeID: "a", Metrics: metrics.New(), Transport: transport,
		Broadcast: true, LeaveGrace: time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(func() { _ = a.Close() })

	names := []string{"ok-1", "reject-2", "ok-3", "unsent-4", "ok-5", "reject-6", "ok-7"}
	type outcome struct {
		id  string
		err error
	}
	outcomes := make(chan outcome, len(names))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	started := time.Now()
	for _, id := range names {
		a.PublishAsync(ctx, backplane.Message{ID: id, Channel: "c"}, func(err error) { outcomes <- outcome{id, err} })
	}
	for _, want := range names {
		got := <-outcomes
		require.Equal(t, want, got.id, "outcomes reported out of call order")
		if strings.HasPrefix(want, "ok") {
			assert.NoError(t, got.err, want)
			continue
		}
		assert.ErrorIs(t, got.err, backplane.ErrUnavailable, want)
	}
	assert.Less(t, time.Since(started), 2*time.Second, "a rejected send waited for the publish deadline")
}

// A publish whose context ended before the loop took it is not taken.
func TestPublishAsyncWithEndedContextIsNotTaken(t *testing.T) {
	network := memtransport.NewNetwork()
	a := newReviewCluster(t, network, "a")
	require.NoError(t, a.Start())
	t.Cleanup(func() { _ = a.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	result := make(chan error, 1)
	a.PublishAsync(ctx, backplane.Message{ID: "late", Channel: "c"}, func(err error) { result <- err })
	err := <-result
	require.ErrorIs(t, err, backplane.ErrUnavailable)
	require.ErrorIs(t, err, context.Canceled)
}
