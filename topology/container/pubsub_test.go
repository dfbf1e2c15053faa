package container_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/topology"
)

// pubSub is a publisher on one node and a subscriber on another, which
// measure how long a publish takes across the link between them.
type pubSub struct {
	from, to topology.Node
	channel  string
	pub, sub *client.Client
	seq      int
}

// newPubSub connects a publisher to from and a subscriber to to, and
// publishes until the first message arrives, because a subscription
// reaches the other nodes asynchronously. A rejected publish is tried
// again, because a node that lost its backplane rejects publishes until it
// has reconnected.
func newPubSub(t *testing.T, from, to topology.Node, channel string) *pubSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ps := &pubSub{from: from, to: to, channel: channel}
	var err error
	ps.sub, err = client.Dial(ctx, to.WSURL, client.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ps.sub.Close() })
	require.NoError(t, ps.sub.Subscribe(ctx, channel))
	ps.pub, err = client.Dial(ctx, from.WSURL, client.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ps.pub.Close() })

	for {
		if _, err := ps.pub.Publish(ctx, channel, json.RawMessage(`"hello"`), 0); err != nil {
			require.NoError(t, ctx.Err(), "publishes from %s kept failing, the last with: %v", from.ID, err)
			t.Logf("publish from %s failed, trying again: %v", from.ID, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case n, ok := <-ps.sub.Notifications():
			require.True(t, ok, "the subscriber on %s lost its connection", to.ID)
			require.NotNil(t, n.Message, "notification %s", n.Method)
			ps.drain()
			return ps
		case <-time.After(time.Second):
		case <-ctx.Done():
			t.Fatalf("no publish from %s reached the subscriber on %s within %s", from.ID, to.ID, waitTimeout)
		}
	}
}

// drain discards the notifications that are already queued.
func (ps *pubSub) drain() {
	for {
		select {
		case <-ps.sub.Notifications():
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// measure publishes one new message and returns the time until the
// subscriber received it.
func (ps *pubSub) measure(t *testing.T) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ps.seq++
	data, err := json.Marshal(map[string]any{"from": ps.from.ID, "seq": ps.seq})
	require.NoError(t, err)
	start := time.Now()
	msgID, err := ps.pub.Publish(ctx, ps.channel, json.RawMessage(data), 0)
	require.NoError(t, err)
	for {
		select {
		case n, ok := <-ps.sub.Notifications():
			require.True(t, ok, "the subscriber on %s lost its connection", ps.to.ID)
			if n.Message == nil || n.Message.MsgID != msgID {
				continue
			}
			assert.JSONEq(t, string(data), string(n.Message.Data))
			return time.Since(start)
		case <-ctx.Done():
			t.Fatalf("publish %s from %s did not reach the subscriber on %s within %s", msgID, ps.from.ID, ps.to.ID, waitTimeout)
		}
	}
}

// counter returns the value of a counter sample of a node's /metrics, such
// as `wscluster_peer_reconnects_total{peer="n2"}`, and 0 when the sample is
// absent because the counter was never incremented.
func counter(t *testing.T, n topology.Node, sample string) float64 {
	t.Helper()
	_, body, err := get(n.HTTPURL + "/metrics")
	require.NoError(t, err, "GET /metrics of %s", n.ID)
	for line := range strings.Lines(body) {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err, "sample %s of %s", sample, n.ID)
			return v
		}
	}
	return 0
}
