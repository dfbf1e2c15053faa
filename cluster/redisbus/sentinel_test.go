package redisbus_test

// Tests of whole wscluster nodes with the redis engine behind Redis
// Sentinel. The helpers for nodes and clients here serve tls_test.go too.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/internal/redistest"
	"github.com/wscluster/wscluster/server"
)

// Timings of the test nodes: short, so that faults show within a second.
const (
	engineHeartbeat   = 100 * time.Millisecond
	enginePeerTimeout = 300 * time.Millisecond
)

// engineWait bounds every wait for something that must happen: readiness,
// a message, a failover.
const engineWait = 20 * time.Second

// enginePoll is the pause between two checks of a condition.
const enginePoll = 10 * time.Millisecond

// engineNode is a wscluster node with the redis engine, serving on a
// loopback port until the test ends.
type engineNode struct {
	id   string
	node *server.Node
	url  string
}

// startEngineNode starts a node with the redis engine and the test timings.
// mutate sets where Redis is and how to reach it.
func startEngineNode(t *testing.T, id string, mutate func(*config.Node)) *engineNode {
	t.Helper()
	cfg := config.Default()
	cfg.NodeID = id
	cfg.Engine = "redis"
	cfg.HeartbeatInterval = engineHeartbeat
	cfg.PeerTimeout = enginePeerTimeout
	mutate(&cfg)
	node, err := server.New(cfg, engineLogger(t))
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- node.Serve(t.Context(), ln) }()

	// The test's context ends before the cleanups run, so every node of
	// the test shuts down at once, gracefully and within
	// server.ShutdownTimeout.
	t.Cleanup(func() {
		select {
		case err := <-served:
			assert.NoError(t, err, "node %s", id)
		case <-time.After(server.ShutdownTimeout + 2*time.Second):
			t.Errorf("node %s did not stop within %s", id, server.ShutdownTimeout)
		}
	})
	return &engineNode{id: id, node: node, url: "ws://" + ln.Addr().String() + "/ws"}
}

// waitReady polls the node until its readiness is want and returns how
// long that took.
func (n *engineNode) waitReady(t *testing.T, want bool) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool { return n.node.Status().Ready == want },
		engineWait, enginePoll, "node %s: ready never became %v", n.id, want)
	return time.Since(start)
}

// waitConnectedPeers polls the node until it counts want peers heard within
// the peer timeout.
func (n *engineNode) waitConnectedPeers(t *testing.T, want int) {
	t.Helper()
	require.Eventually(t, func() bool { return n.node.Status().ConnectedPeers == want },
		engineWait, enginePoll, "node %s: connected peers never became %d", n.id, want)
}

// assertNeverReady checks for the whole window that the node is not ready.
// There is no event to await for a node that must stay down, so a bounded
// window of several peer timeouts replaces "never".
func (n *engineNode) assertNeverReady(t *testing.T, window time.Duration) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		require.False(t, n.node.Status().Ready, "node %s became ready", n.id)
		time.Sleep(enginePoll)
	}
}

// engineLogWriter sends log lines to t.Log until the test ends, so that a
// goroutine that logs late cannot make the test panic.
type engineLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *engineLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// engineLogger returns a logger whose lines show in the test output when
// the test fails or runs with -v.
func engineLogger(t testing.TB) *slog.Logger {
	w := &engineLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// engineClient is a WebSocket client of one node.
type engineClient struct {
	*client.Client
	node string
}

// subscribeClients connects one client to each node and subscribes it to
// channel.
func subscribeClients(t *testing.T, nodes []*engineNode, channel string) []*engineClient {
	t.Helper()
	clients := make([]*engineClient, 0, len(nodes))
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), engineWait)
		c, err := client.Dial(ctx, n.url, client.Options{})
		require.NoError(t, err, "dial node %s", n.id)
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, c.Subscribe(ctx, channel), "subscribe on node %s", n.id)
		cancel()
		clients = append(clients, &engineClient{Client: c, node: n.id})
	}
	return clients
}

// exchangeMessages has every client publish tag+"/"+its node to channel and
// checks that every client receives each of those messages exactly once.
// It returns the time from the first publish until the last client had
// them all.
func exchangeMessages(t *testing.T, clients []*engineClient, channel, tag string) time.Duration {
	t.Helper()
	start := time.Now()
	want := make(map[string]bool)
	for _, c := range clients {
		data := tag + "/" + c.node
		want[data] = true
		ctx, cancel := context.WithTimeout(context.Background(), engineWait)
		_, err := c.Publish(ctx, channel, data, 0)
		cancel()
		require.NoError(t, err, "publish %q on node %s", data, c.node)
	}
	for _, c := range clients {
		awaitMessages(t, c, channel, want)
	}
	return time.Since(start)
}

// awaitMessages reads c's notifications until every message in want
// arrived on channel. A message that is not in want, or arrives twice,
// fails the test.
func awaitMessages(t *testing.T, c *engineClient, channel string, want map[string]bool) {
	t.Helper()
	got := make(map[string]bool)
	timeout := time.After(engineWait)
	for len(got) < len(want) {
		select {
		case note, ok := <-c.Notifications():
			require.True(t, ok, "the client of node %s was disconnected", c.node)
			if note.Message == nil || note.Message.Channel != channel {
				continue
			}
			var data string
			require.NoError(t, json.Unmarshal(note.Message.Data, &data))
			require.True(t, want[data], "client of node %s got unexpected message %q", c.node, data)
			require.False(t, got[data], "client of node %s got %q twice", c.node, data)
			got[data] = true
		case <-timeout:
			t.Fatalf("client of node %s got %d of %d messages within %s: %v", c.node, len(got), len(want), engineWait, got)
		}
	}
}

// requireBackplaneUnavailable checks that a publish through c is rejected
// with error 1005.
func requireBackplaneUnavailable(t *testing.T, c *engineClient, channel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), engineWait)
	defer cancel()
	_, err := c.Publish(ctx, channel, "not-ready/"+c.node, 0)
	var rpcErr *client.RPCError
	require.True(t, errors.As(err, &rpcErr), "publish on node %s: want error 1005, got %v", c.node, err)
	assert.Equal(t, client.CodeBackplaneUnavailable, rpcErr.Code)
}

func TestSentinelFailoverKeepsDelivering(t *testing.T) {
	failover := redistest.StartFailover(t, 3)
	sentinelConfig := func(cfg *config.Node) {
		cfg.RedisSentinelAddrs = failover.SentinelAddrs()
		cfg.RedisSentinelMaster = redistest.MasterName
	}
	nodes := []*engineNode{
		startEngineNode(t, "s1", sentinelConfig),
		startEngineNode(t, "s2", sentinelConfig),
	}
	for _, n := range nodes {
		n.waitReady(t, true)
		n.waitConnectedPeers(t, 1)
	}

	// The subscriptions are made once, before the failover, and must keep
	// working after it without any client or node restarting.
	clients := subscribeClients(t, nodes, "failover")
	exchangeMessages(t, clients, "failover", "before")

	ctx, cancel := context.WithTimeout(context.Background(), engineWait)
	oldPrimary, err := failover.MasterAddr(ctx)
	cancel()
	require.NoError(t, err)
	require.Equal(t, failover.Primary.Addr(), oldPrimary)

	killed := time.Now()
	failover.Primary.Kill()
	for _, n := range nodes {
		n.waitReady(t, false)
	}
	notReady := time.Since(killed)

	newPrimary := failover.WaitForNewMaster(t, oldPrimary, engineWait)
	promoted := time.Since(killed)
	assert.Equal(t, failover.Replica.Addr(), newPrimary, "sentinel promoted an unknown server")

	for _, n := range nodes {
		n.waitReady(t, true)
	}
	ready := time.Since(killed)
	for _, n := range nodes {
		n.waitConnectedPeers(t, 1)
	}

	delivered := exchangeMessages(t, clients, "failover", "after")
	t.Logf("after SIGKILL of the primary: both nodes not ready after %s, sentinel reported the new primary after %s, both nodes ready after %s (%s after the promotion), first messages delivered %s later",
		notReady, promoted, ready, ready-promoted, delivered)

	// A last round shows that nothing of the earlier rounds comes again,
	// for example from a replay after the new session.
	exchangeMessages(t, clients, "failover", "end")
}
