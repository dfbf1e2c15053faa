package workloads

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// awaitLeave waits for a presence.leave of member on c, and returns the
// time it arrived.
func awaitLeave(t *testing.T, c *client.Client, member string, within time.Duration) time.Time {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case n, ok := <-c.Notifications():
			require.True(t, ok, "the observer's connection ended")
			if n.Presence != nil && n.Method == client.MethodPresenceLeave && n.Presence.Member == member {
				return n.Received
			}
		case <-timeout:
			require.FailNow(t, "no presence.leave", "member %s still joined after %s", member, within)
		}
	}
}

func TestSilenceRecordsDropAndNodeClosesIt(t *testing.T) {
	nodes := startMesh(t, 2)
	rec := history.NewRecorder(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A silent candidate joins on n1 through its proxy, and an observer on
	// n2 waits until the member reaches its roster.
	c, err := dialConn(ctx, rec, 1, 1, nodes[0].info, 2*time.Second, true, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotNil(t, c.proxy)
	_, err = c.client.Join(ctx, "room", "m-silent", nil)
	require.NoError(t, err)
	observer, err := client.Dial(ctx, nodes[1].info.WSURL, client.Options{})
	require.NoError(t, err)
	defer observer.Close()
	require.Eventually(t, func() bool {
		roster, err := observer.Join(ctx, "room", "obs", nil)
		return err == nil && len(roster) == 2
	}, 5*time.Second, 50*time.Millisecond, "m-silent in n2's roster")

	// Silence: the node must close the connection after its pong timeout,
	// not at once, because the proxy keeps every socket open.
	silentAt := time.Now()
	require.True(t, c.silence())
	assert.False(t, c.silence(), "a second silence")
	leftAt := awaitLeave(t, observer, "m-silent", 2*testPingInterval+2*time.Second)
	took := leftAt.Sub(silentAt)
	assert.Greater(t, took, testPingInterval/2, "the member left too soon for a pong timeout: the connection was closed")
	assert.LessOrEqual(t, took, 2*testPingInterval+time.Second)
	assert.False(t, c.isLost(), "the client still holds its side of the silent connection")

	// Closing a silent connection does not wait for a close answer.
	start := time.Now()
	c.shutdown()
	assert.Less(t, time.Since(start), 500*time.Millisecond, "shutdown of a silent connection")

	// The history: connect, maybe the observer's presence.join event, then
	// the drop marked silent, and nothing of the connection after it.
	ops := selectOps(rec.Ops(), func(op history.Op) bool { return op.Type != history.Event })
	requireWellFormed(t, rec.Ops())
	require.Len(t, ops, 4)
	assert.True(t, is(history.Ok, history.FConnect)(ops[1]))
	assert.True(t, is(history.Invoke, history.FDrop)(ops[2]))
	assert.True(t, is(history.Ok, history.FDrop)(ops[3]))
	assert.Equal(t, silentError, ops[3].Error)
	assert.Equal(t, "n1", ops[3].Node)
	assert.Equal(t, 1, ops[3].Epoch)
	all := rec.Ops()
	assert.Equal(t, ops[3].Index, all[len(all)-1].Index, "an entry after the silent drop")
}

func TestSilenceNeedsProxy(t *testing.T) {
	nodes := startMesh(t, 1)
	rec := history.NewRecorder(nil)
	c, err := dialConn(context.Background(), rec, 1, 1, nodes[0].info, 2*time.Second, false, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer c.shutdown()

	assert.Nil(t, c.proxy)
	assert.False(t, c.silence(), "a direct connection cannot go silent")
	assert.Len(t, rec.Ops(), 2, "only the connect is recorded")
}

func TestProxyDialNeedsPort(t *testing.T) {
	rec := history.NewRecorder(nil)
	node := topology.Node{ID: "n1", WSURL: "ws://127.0.0.1/ws"}
	_, err := dialConn(context.Background(), rec, 1, 1, node, time.Second, true, slog.New(slog.DiscardHandler))

	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "ws://127.0.0.1/ws")
	ops := rec.Ops()
	require.Len(t, ops, 2)
	assert.True(t, is(history.Fail, history.FConnect)(ops[1]), "the failed connect is recorded")
}
