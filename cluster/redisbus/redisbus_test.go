package redisbus_test

// Tests of the transport alone against a real redis-server: the events it
// gives the cluster layer, readiness from the own heartbeat echo, and the
// publish acknowledgement. The core does not run here, so each test node
// sends its own heartbeats.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/redisbus"
	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/internal/redistest"
	"github.com/wscluster/wscluster/metrics"
)

const (
	busHeartbeat   = 100 * time.Millisecond
	busPeerTimeout = 300 * time.Millisecond
	// busWait bounds every wait for an event that must happen.
	busWait = 15 * time.Second
	// busPoll is the pause between two checks of a condition.
	busPoll = 10 * time.Millisecond
)

// busNode is one transport with a goroutine that records its events and
// another that sends a heartbeat every busHeartbeat, as the core would.
type busNode struct {
	id          string
	incarnation uint64
	transport   *redisbus.Transport
	metrics     *metrics.Metrics

	mu     sync.Mutex
	events []cluster.TransportEvent
}

// startBusNode starts a transport of node id on srv with maxFrame as
// MaxFrameBytes (0 for the default). It closes when the test ends.
func startBusNode(t *testing.T, srv *redistest.Server, id string, maxFrame int) *busNode {
	t.Helper()
	n := &busNode{id: id, incarnation: backplane.NewIDs(id).Incarnation(), metrics: metrics.New()}
	transport, err := redisbus.New(redisbus.Config{
		NodeID:            id,
		Incarnation:       n.incarnation,
		Channel:           "bus-test",
		Addr:              srv.Addr(),
		HeartbeatInterval: busHeartbeat,
		PeerTimeout:       busPeerTimeout,
		MaxFrameBytes:     maxFrame,
		Metrics:           n.metrics,
	})
	require.NoError(t, err)
	n.transport = transport

	events := make(chan cluster.TransportEvent, 64)
	require.NoError(t, transport.Start(events))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		n.record(events, stop)
	}()
	go func() {
		defer wg.Done()
		n.heartbeat(stop)
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		assert.NoError(t, transport.Close())
	})
	return n
}

func (n *busNode) record(events <-chan cluster.TransportEvent, stop <-chan struct{}) {
	for {
		select {
		case ev := <-events:
			n.mu.Lock()
			n.events = append(n.events, ev)
			n.mu.Unlock()
		case <-stop:
			return
		}
	}
}

func (n *busNode) heartbeat(stop <-chan struct{}) {
	tick := time.NewTicker(busHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			n.transport.Send("", &wire.Envelope{Kind: wire.KindHeartbeat, Origin: n.id, Incarnation: n.incarnation})
		case <-stop:
			return
		}
	}
}

// recorded returns a copy of the events so far.
func (n *busNode) recorded() []cluster.TransportEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]cluster.TransportEvent(nil), n.events...)
}

// envelopesFrom returns the envelopes of kind received from peer.
func (n *busNode) envelopesFrom(peer string, kind wire.Kind) []*wire.Envelope {
	var out []*wire.Envelope
	for _, ev := range n.recorded() {
		if ev.Kind == cluster.EventEnvelope && ev.Peer == peer && ev.Envelope.Kind == kind {
			out = append(out, ev.Envelope)
		}
	}
	return out
}

// countEvents returns how many events of kind concern peer.
func (n *busNode) countEvents(kind cluster.EventKind, peer string) int {
	count := 0
	for _, ev := range n.recorded() {
		if ev.Kind == kind && ev.Peer == peer {
			count++
		}
	}
	return count
}

func (n *busNode) waitReady(t testing.TB, want bool) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool { return n.transport.Ready() == want }, busWait, busPoll,
		"transport of %s never reported ready=%v", n.id, want)
	return time.Since(start)
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func TestTransportLinksAndDelivers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startBusNode(t, srv, "bus-a", 0)
	b := startBusNode(t, srv, "bus-b", 0)
	c := startBusNode(t, srv, "bus-c", 0)
	for _, n := range []*busNode{a, b, c} {
		n.waitReady(t, true)
	}

	// A publish for every node reaches both others once, and comes back to
	// its sender as an echo. Redis answers the PUBLISH, so the
	// acknowledgement succeeds.
	publish := &wire.Envelope{Kind: wire.KindPublish, Origin: "bus-a", Incarnation: a.incarnation, Seq: 1,
		Message: backplane.Message{ID: "bus-a:1", Channel: "room", Data: []byte(`{"n":1}`)}}
	require.True(t, a.transport.Send("", publish))
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	require.NoError(t, a.transport.Acknowledged(ctx, publish))
	for _, n := range []*busNode{b, c} {
		require.Eventually(t, func() bool { return len(n.envelopesFrom("bus-a", wire.KindPublish)) == 1 }, busWait, busPoll,
			"%s did not receive the publish of bus-a", n.id)
		got := n.envelopesFrom("bus-a", wire.KindPublish)[0]
		assert.Equal(t, publish.Message, got.Message, "%s received a changed message", n.id)
		assert.Equal(t, 1, n.countEvents(cluster.EventLinkUp, "bus-a"), "%s: one link to bus-a", n.id)
	}
	require.Eventually(t, func() bool { return a.countEvents(cluster.EventEcho, "bus-a") == 1 }, busWait, busPoll,
		"bus-a never got the echo of its own publish")

	// An envelope addressed to one node reaches only that node.
	sync := &wire.Envelope{Kind: wire.KindSyncRequest, Origin: "bus-a", Incarnation: a.incarnation}
	require.True(t, a.transport.Send("bus-b", sync))
	require.Eventually(t, func() bool { return len(b.envelopesFrom("bus-a", wire.KindSyncRequest)) == 1 }, busWait, busPoll,
		"bus-b did not receive the envelope addressed to it")

	// A later heartbeat of bus-a has passed through Redis after the sync
	// request, so bus-c would have received it by then.
	seen := len(c.envelopesFrom("bus-a", wire.KindHeartbeat))
	require.Eventually(t, func() bool { return len(c.envelopesFrom("bus-a", wire.KindHeartbeat)) > seen+1 }, busWait, busPoll)
	assert.Empty(t, c.envelopesFrom("bus-a", wire.KindSyncRequest), "bus-c received an envelope addressed to bus-b")

	peers := a.transport.Peers()
	require.Len(t, peers, 2)
	assert.Equal(t, "bus-b", peers[0].ID)
	assert.Equal(t, "bus-c", peers[1].ID)
	assert.True(t, peers[0].Connected && peers[1].Connected, "peers heard lately must be connected: %+v", peers)
}

func TestTransportReadinessFollowsRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startBusNode(t, srv, "ready-a", 0)
	b := startBusNode(t, srv, "ready-b", 0)
	a.waitReady(t, true)
	b.waitReady(t, true)
	require.Eventually(t, func() bool { return a.countEvents(cluster.EventLinkUp, "ready-b") == 1 }, busWait, busPoll)
	reconnects := counterValue(t, a.metrics.RedisReconnects)

	// With Redis gone, nothing is sent and every link goes down.
	srv.Kill()
	a.waitReady(t, false)
	assert.False(t, a.transport.Send("", &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "ready-a", Incarnation: a.incarnation}),
		"Send must report failure while the subscription is lost")
	require.Eventually(t, func() bool { return a.countEvents(cluster.EventLinkDown, "ready-b") >= 1 }, busWait, busPoll,
		"the link to ready-b stayed up without Redis")

	// After the restart both nodes subscribe again with a new session, so
	// each gets a new link to the other.
	srv.Restart()
	a.waitReady(t, true)
	b.waitReady(t, true)
	require.Eventually(t, func() bool { return a.countEvents(cluster.EventLinkUp, "ready-b") >= 2 }, busWait, busPoll,
		"no new link to ready-b after Redis returned")
	assert.Greater(t, counterValue(t, a.metrics.RedisReconnects), reconnects)
}

func TestTransportAcknowledgesOnlyAfterRedisAnswers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startBusNode(t, srv, "ack-a", 0)
	a.waitReady(t, true)

	// A paused Redis keeps the socket open and answers nothing, so the
	// PUBLISH gets no reply and the pipeline times out after the peer
	// timeout.
	srv.Pause()
	paused := time.Now()
	publish := &wire.Envelope{Kind: wire.KindPublish, Origin: "ack-a", Incarnation: a.incarnation, Seq: 1,
		Message: backplane.Message{ID: "ack-a:1", Channel: "room", Data: []byte(`1`)}}
	sent := a.transport.Send("", publish)
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	err := a.transport.Acknowledged(ctx, publish)
	waited := time.Since(paused)
	srv.Resume()

	if !sent {
		t.Skip("the node was already not ready when the publish was sent; the machine is too slow for this timing")
	}
	require.Error(t, err, "Redis was paused, so the publish cannot have been acknowledged")
	assert.ErrorIs(t, err, backplane.ErrUnconfirmed, "a PUBLISH written to a paused Redis may still run, so its outcome is unknown")
	assert.GreaterOrEqual(t, waited, busPeerTimeout/2, "the publish failed before Redis had a chance to answer")
	// go-redis's own socket timeout is 5 s. Failing well before it shows
	// that the peer timeout bounds the wait.
	assert.Less(t, waited, 3*time.Second, "the publish waited longer than the peer timeout allows")
	t.Logf("publish to a paused Redis failed after %s (peer timeout %s): %v", waited.Round(time.Millisecond), busPeerTimeout, err)
	a.waitReady(t, true)
}

func TestTransportDropsBadChannelMessages(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const maxFrame = 4096
	a := startBusNode(t, srv, "drop-a", maxFrame)
	a.waitReady(t, true)

	// Anything else on the channel, too large or not a message of this
	// protocol, is counted and dropped, and the transport stays ready.
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	rdb := srv.Client()
	require.NoError(t, rdb.Publish(ctx, "bus-test", make([]byte, maxFrame+1)).Err())
	require.NoError(t, rdb.Publish(ctx, "bus-test", "not a wscluster message").Err())
	require.Eventually(t, func() bool {
		return counterValue(t, a.metrics.PeerLinkRejects.WithLabelValues("oversized")) == 1 &&
			counterValue(t, a.metrics.PeerLinkRejects.WithLabelValues("malformed")) == 1
	}, busWait, busPoll, "the bad messages were not counted")
	assert.True(t, a.transport.Ready())
	for _, ev := range a.recorded() {
		assert.NotEqual(t, cluster.EventEnvelope, ev.Kind, "a bad message became an envelope: %+v", ev)
	}
}

func TestTransportDropsStaleSession(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startBusNode(t, srv, "stale-a", 4096)
	a.waitReady(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	rdb := srv.Client()
	send := func(session, seq uint64) {
		env := &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "peer-x", Incarnation: 5, Seq: seq}
		require.NoError(t, rdb.Publish(ctx, "bus-test", redisbus.EncodeMessage(session, env)).Err())
	}

	// Session 2 links the peer. A message of its earlier session 1,
	// delivered late, is dropped and does not re-link. Session 3 does.
	send(2, 1)
	require.Eventually(t, func() bool { return a.countEvents(cluster.EventLinkUp, "peer-x") == 1 }, busWait, busPoll)
	send(1, 2)
	require.Eventually(t, func() bool {
		return counterValue(t, a.metrics.PeerLinkRejects.WithLabelValues("stale_session")) == 1
	}, busWait, busPoll, "the stale message was not counted")
	assert.Equal(t, 1, a.countEvents(cluster.EventLinkUp, "peer-x"), "a stale session re-linked the peer")
	send(3, 3)
	require.Eventually(t, func() bool { return a.countEvents(cluster.EventLinkUp, "peer-x") == 2 }, busWait, busPoll)
	assert.Len(t, a.envelopesFrom("peer-x", wire.KindHeartbeat), 2, "only the envelopes of current sessions are delivered")
}
