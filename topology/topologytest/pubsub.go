package topologytest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/topology"
)

// PubSub is a publisher on one node and a subscriber on another, which
// time how long a publish takes across the link between them.
type PubSub struct {
	from, to topology.Node
	channel  string
	pub, sub *client.Client
	seq      int
}

// NewPubSub connects a publisher to from and a subscriber to to, and
// publishes until the first message arrives, because a subscription
// reaches the other nodes asynchronously. A rejected publish is tried
// again, because a node that lost its backplane rejects publishes until it
// has reconnected.
func NewPubSub(t testing.TB, from, to topology.Node, channel string) *PubSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	ps := &PubSub{from: from, to: to, channel: channel}
	var err error
	ps.sub, err = client.Dial(ctx, to.WSURL, client.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ps.sub.Close() })
	require.NoError(t, ps.sub.Subscribe(ctx, channel))
	ps.pub, err = client.Dial(ctx, from.WSURL, client.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ps.pub.Close() })

	for !ps.firstArrived(ctx, t) {
	}
	ps.Drain()
	return ps
}

// firstArrived publishes once and reports whether a message reached the
// subscriber within a second.
func (ps *PubSub) firstArrived(ctx context.Context, t testing.TB) bool {
	t.Helper()
	if _, err := ps.pub.Publish(ctx, ps.channel, json.RawMessage(`"hello"`), 0); err != nil {
		require.NoError(t, ctx.Err(), "publishes from %s kept failing, the last with: %v", ps.from.ID, err)
		t.Logf("publish from %s failed, trying again: %v", ps.from.ID, err)
		time.Sleep(100 * time.Millisecond)
		return false
	}
	select {
	case n, ok := <-ps.sub.Notifications():
		require.True(t, ok, "the subscriber on %s lost its connection", ps.to.ID)
		require.NotNil(t, n.Message, "notification %s", n.Method)
		assert.JSONEq(t, `"hello"`, string(n.Message.Data))
		return true
	case <-time.After(time.Second):
		return false
	case <-ctx.Done():
		t.Fatalf("no publish from %s reached the subscriber on %s within %s", ps.from.ID, ps.to.ID, WaitTimeout)
		return false
	}
}

// Drain discards the notifications that are already queued.
func (ps *PubSub) Drain() {
	for {
		select {
		case <-ps.sub.Notifications():
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// Measure publishes one new message and returns the time until the
// subscriber received it.
func (ps *PubSub) Measure(t testing.TB) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
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
			assert.Equal(t, ps.channel, n.Message.Channel)
			assert.JSONEq(t, string(data), string(n.Message.Data))
			return time.Since(start)
		case <-ctx.Done():
			t.Fatalf("publish %s from %s did not reach the subscriber on %s within %s", msgID, ps.from.ID, ps.to.ID, WaitTimeout)
			return 0
		}
	}
}
