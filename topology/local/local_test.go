package local_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	notExecutable := filepath.Join(t.TempDir(), "wscluster")
	require.NoError(t, os.WriteFile(notExecutable, []byte("text"), 0o644))
	cases := []struct {
		name string
		edit func(*topology.Config)
		want string
	}{
		{"unknown engine", func(c *topology.Config) { c.Engine = "gossip" }, `invalid engine "gossip"`},
		{"no nodes", func(c *topology.Config) { c.Nodes = 0 }, "invalid node count 0"},
		{"negative start timeout", func(c *topology.Config) { c.StartTimeout = -time.Second }, "invalid start timeout"},
		{"no run folder", func(c *topology.Config) { c.Dir = "" }, "missing run folder"},
		{"no binary", func(c *topology.Config) { c.Binary = "" }, "missing wscluster binary"},
		{"missing binary", func(c *topology.Config) { c.Binary = "/nonexistent/wscluster" }, "go build -o /nonexistent/wscluster"},
		{"binary not executable", func(c *topology.Config) { c.Binary = notExecutable }, "not an executable file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newConfig(t, "mesh", 2)
			tc.edit(&cfg)
			_, err := local.New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLinksPerEngine(t *testing.T) {
	requireRedis(t)
	cases := map[string][]topology.Link{
		"none":  {},
		"mesh":  {{"n1", "n2"}, {"n1", "n3"}, {"n2", "n3"}},
		"redis": {{"n1", topology.Redis}, {"n2", topology.Redis}, {"n3", topology.Redis}},
	}
	for engine, want := range cases {
		topo, err := local.New(newConfig(t, engine, 3))
		require.NoError(t, err, engine)
		assert.Equal(t, want, topo.Links(), engine)

		nodes := topo.Nodes()
		require.Len(t, nodes, 3, engine)
		assert.Equal(t, "n3", nodes[2].ID)
		assert.True(t, strings.HasPrefix(nodes[2].WSURL, "ws://127.0.0.1:"), nodes[2].WSURL)
		assert.True(t, strings.HasSuffix(nodes[2].Log, filepath.Join("logs", "n3.log")), nodes[2].Log)
	}
}

func TestStartFailureQuotesNodeLog(t *testing.T) {
	cfg := newConfig(t, "none", 1)
	cfg.ExtraArgs = []string{"--ping-interval", "abc"}
	topo, err := local.New(cfg)
	require.NoError(t, err)

	err = topo.Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start n1")
	assert.Contains(t, err.Error(), "exited before it served")
	assert.Contains(t, err.Error(), `invalid value "abc" for --ping-interval`, "the error quotes the node's log")

	// Start cleaned up after itself, so Close has nothing left to do.
	require.NoError(t, topo.Close(context.Background()))
	_, err = topo.Kill(context.Background(), "n1")
	assert.ErrorContains(t, err, "closed")
}

// pubSub is a publisher on one node and a subscriber on another.
type pubSub struct {
	from, to topology.Node
	channel  string
	pub, sub *client.Client
	seq      int
}

// newPubSub connects a publisher to from and a subscriber to to, and
// publishes until the first message arrives, because a subscription
// reaches the other nodes asynchronously.
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
		_, err := ps.pub.Publish(ctx, channel, json.RawMessage(`"hello"`), 0)
		require.NoError(t, err)
		select {
		case n, ok := <-ps.sub.Notifications():
			require.True(t, ok, "the subscriber on %s lost its connection", to.ID)
			require.NotNil(t, n.Message, "notification %s", n.Method)
			assert.JSONEq(t, `"hello"`, string(n.Message.Data))
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
			assert.Equal(t, ps.channel, n.Message.Channel)
			assert.JSONEq(t, string(data), string(n.Message.Data))
			return time.Since(start)
		case <-ctx.Done():
			t.Fatalf("publish %s from %s did not reach the subscriber on %s within %s", msgID, ps.from.ID, ps.to.ID, waitTimeout)
		}
	}
}

// requireNodeDown checks that a GET of node n's /healthz fails.
func requireNodeDown(t *testing.T, n topology.Node) {
	t.Helper()
	_, _, err := get(n.HTTPURL + "/healthz")
	require.Error(t, err, "GET /healthz of %s", n.ID)
}

// requireReadyzCode checks the current /readyz status of node n.
func requireReadyzCode(t *testing.T, n topology.Node, want int) {
	t.Helper()
	code, body, err := get(n.HTTPURL + "/readyz")
	require.NoError(t, err)
	require.Equal(t, want, code, "/readyz of %s: %s", n.ID, body)
}
