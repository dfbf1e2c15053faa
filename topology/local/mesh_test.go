package local_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
	"github.com/wscluster/wscluster/topology/topologytest"
)

// TestMeshFaults runs one three-node mesh through every fault in turn.
// Each step starts and ends with every node up and linked to both others.
func TestMeshFaults(t *testing.T) {
	cfg := newConfig(t, "mesh", 3)
	topo := startTopology(t, cfg)
	nodes := topo.Nodes()
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ready", func(t *testing.T) {
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusOK)
				topologytest.WaitConnectedPeers(t, n, 2)
			}
		}},
		{"publish through proxies", func(t *testing.T) {
			ps := topologytest.NewPubSub(t, n1, n3, "news")
			t.Logf("a publish from n1 reached n3 in %s", ps.Measure(t))
		}},
		{"partition and heal", func(t *testing.T) {
			mechanism, err := topo.Partition(ctx, []topology.Link{{"n1", "n2"}, {"n3", "n1"}})
			require.NoError(t, err)
			assert.Equal(t, "tcp-proxy", mechanism)
			took := topologytest.WaitConnectedPeers(t, n1, 0)
			t.Logf("n1 reported 0 connected peers %s after the partition", took)
			assert.GreaterOrEqual(t, took, 500*time.Millisecond, "a blackhole is silent, so only the 1s peer timeout ends the links")
			topologytest.WaitConnectedPeers(t, n2, 1)
			topologytest.WaitConnectedPeers(t, n3, 1)

			require.NoError(t, topo.HealNetwork(ctx))
			for _, n := range nodes {
				topologytest.WaitConnectedPeers(t, n, 2)
			}
		}},
		{"degrade adds latency", func(t *testing.T) {
			ps := topologytest.NewPubSub(t, n2, n3, "slow")
			before := ps.Measure(t)
			mechanism, err := topo.Degrade(ctx, []topology.Link{{"n2", "n3"}}, topology.LinkFault{Latency: 300 * time.Millisecond})
			require.NoError(t, err)
			assert.Equal(t, "tcp-proxy", mechanism)
			during := ps.Measure(t)
			assert.GreaterOrEqual(t, during, 300*time.Millisecond, "publish from n2 to n3 with 300ms on the link")

			// Bytes already in flight keep their due times, as on a real
			// network, so the last ones arrive up to 300ms after healing.
			require.NoError(t, topo.HealNetwork(ctx))
			time.Sleep(600 * time.Millisecond)
			after := ps.Measure(t)
			t.Logf("publish n2 to n3: %s before, %s with 300ms latency, %s after healing", before, during, after)
			assert.Less(t, after, 300*time.Millisecond, "publish from n2 to n3 after healing")
		}},
		{"degrade rejects loss", func(t *testing.T) {
			_, err := topo.Degrade(ctx, []topology.Link{{"n1", "n2"}}, topology.LinkFault{Loss: 0.1})
			require.ErrorIs(t, err, topology.ErrUnsupported)
			assert.ErrorContains(t, err, "container topology")
			_, err = topo.Degrade(ctx, []topology.Link{{"n1", "n2"}}, topology.LinkFault{Latency: -time.Second})
			assert.ErrorContains(t, err, "invalid link fault")
		}},
		{"reset connections", func(t *testing.T) {
			reconnects := func() float64 {
				return topologytest.Metric(t, n1, `wscluster_peer_reconnects_total{peer="n2"}`) +
					topologytest.Metric(t, n2, `wscluster_peer_reconnects_total{peer="n1"}`)
			}
			before := reconnects()
			mechanism, err := topo.ResetConnections(ctx, []topology.Link{{"n1", "n2"}})
			require.NoError(t, err)
			assert.Equal(t, "tcp-proxy", mechanism)
			topologytest.WaitUntil(t, "n1 and n2 to link again after the reset", func() string {
				if reconnects() <= before {
					return "no reconnect counted yet"
				}
				return ""
			})
			topologytest.WaitConnectedPeers(t, n1, 2)
		}},
		{"kill and restart", func(t *testing.T) {
			mechanism, err := topo.Kill(ctx, "n2")
			require.NoError(t, err)
			assert.Equal(t, "SIGKILL", mechanism)
			requireNodeDown(t, n2)
			_, err = topo.Kill(ctx, "n2")
			assert.ErrorContains(t, err, "kill n2: it is killed, not running")
			topologytest.WaitConnectedPeers(t, n1, 1)

			mechanism, err = topo.Restart(ctx, "n2")
			require.NoError(t, err)
			assert.Equal(t, "restart", mechanism)
			topologytest.RequireHealthy(t, n2)
			_, err = topo.Restart(ctx, "n2")
			assert.ErrorContains(t, err, "start n2: it is running")
			assert.Equal(t, 2, countMarkers(t, n2.Log), "start markers in %s", n2.Log)
			assert.Equal(t, 1, countMarkers(t, n1.Log), "start markers in %s", n1.Log)
			for _, n := range nodes {
				topologytest.WaitConnectedPeers(t, n, 2)
			}
		}},
		{"pause and resume", func(t *testing.T) {
			mechanism, err := topo.Pause(ctx, "n3")
			require.NoError(t, err)
			assert.Equal(t, "SIGSTOP", mechanism)
			_, _, err = topologytest.Get(n3.HTTPURL + "/healthz")
			require.Error(t, err, "a paused node answers nothing")
			assert.ErrorContains(t, err, "Timeout")
			_, err = topo.Pause(ctx, "n3")
			assert.ErrorContains(t, err, "pause n3: it is paused")
			_, err = topo.Restart(ctx, "n3")
			assert.ErrorContains(t, err, "start n3: it is paused")

			mechanism, err = topo.Resume(ctx, "n3")
			require.NoError(t, err)
			assert.Equal(t, "SIGCONT", mechanism)
			topologytest.RequireHealthy(t, n3)
			_, err = topo.Resume(ctx, "n3")
			assert.ErrorContains(t, err, "resume n3: it is running")
			topologytest.WaitConnectedPeers(t, n3, 2)
		}},
		{"bad node ids and links", func(t *testing.T) {
			for _, id := range []string{"n4", "n0", topology.Redis, ""} {
				_, err := topo.Kill(ctx, id)
				require.ErrorIs(t, err, topology.ErrUnknownNode, "Kill(%q)", id)
				_, err = topo.Restart(ctx, id)
				require.ErrorIs(t, err, topology.ErrUnknownNode, "Restart(%q)", id)
				_, err = topo.Pause(ctx, id)
				require.ErrorIs(t, err, topology.ErrUnknownNode, "Pause(%q)", id)
				_, err = topo.Resume(ctx, id)
				require.ErrorIs(t, err, topology.ErrUnknownNode, "Resume(%q)", id)
			}
			_, err := topo.Partition(ctx, []topology.Link{{"n1", "n2"}, {"n1", "n9"}})
			require.ErrorIs(t, err, topology.ErrUnknownNode)
			_, err = topo.Partition(ctx, []topology.Link{{"n1", topology.Redis}})
			require.ErrorIs(t, err, topology.ErrUnknownNode)
			_, err = topo.ResetConnections(ctx, []topology.Link{{"n2", "n2"}})
			require.ErrorIs(t, err, local.ErrUnknownLink)
			_, err = topo.Partition(ctx, nil)
			assert.ErrorContains(t, err, "no links given")

			// The bad list above cut nothing, not even its valid first link.
			time.Sleep(cfg.PeerTimeout + 500*time.Millisecond)
			topologytest.WaitConnectedPeers(t, n1, 2)
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}

	// Close kills every node, the paused one too, and stays quiet when
	// called again.
	_, err := topo.Pause(ctx, "n1")
	require.NoError(t, err)
	require.NoError(t, topo.Close(ctx))
	for _, n := range nodes {
		requireNodeDown(t, n)
	}
	require.NoError(t, topo.Close(ctx))
	_, err = topo.Restart(ctx, "n2")
	assert.ErrorContains(t, err, "closed")
	assert.ErrorContains(t, topo.HealNetwork(ctx), "closed")
}
