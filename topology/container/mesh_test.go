package container_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/container"
	"github.com/wscluster/wscluster/topology/topologytest"
)

// TestMeshFaults runs one three-node mesh in containers through every
// fault in turn. Each step starts and ends with every node up and linked to
// both others.
func TestMeshFaults(t *testing.T) {
	requireDocker(t)
	cfg := newConfig(t, "mesh", 3)
	topo := startTopology(t, cfg)
	nodes := topo.Nodes()
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	allLinked := func(t *testing.T) {
		for _, n := range nodes {
			topologytest.WaitConnectedPeers(t, n, 2)
		}
	}

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ready", func(t *testing.T) {
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusOK)
			}
			allLinked(t)
			requireNoFaults(t, topo, "n1", "n2", "n3")
		}},
		{"partition and heal", func(t *testing.T) {
			mechanism, err := topo.Partition(ctx, []topology.Link{{"n2", "n1"}})
			require.NoError(t, err)
			assert.Equal(t, container.MechanismNFTables, mechanism)
			took := topologytest.WaitPeer(t, n1, "n2", false)
			t.Logf("n1 reported n2 disconnected %s after the partition", took)
			assert.GreaterOrEqual(t, took, 500*time.Millisecond, "dropped packets are silent, so only the 1s peer timeout ends the link")
			topologytest.WaitPeer(t, n2, "n1", false)
			topologytest.RequirePeers(t, n3, "n1", "n2")
			topologytest.RequirePeers(t, n1, "n3")
			for _, name := range []string{"n1", "n2"} {
				st, err := container.SidecarStatus(ctx, topo, name)
				require.NoError(t, err)
				assert.Equal(t, 2, st.NFTRules, "rules in %s: one per direction", name)
			}
			requireNoFaults(t, topo, "n3")

			require.NoError(t, topo.HealNetwork(ctx))
			requireNoFaults(t, topo, "n1", "n2", "n3")
			allLinked(t)
		}},
		{"partition survives a restart", func(t *testing.T) {
			startTime := topologytest.Metric(t, n2, "process_start_time_seconds")
			mechanism, err := topo.Kill(ctx, "n2")
			require.NoError(t, err)
			assert.Equal(t, container.MechanismKill, mechanism)
			_, _, err = topologytest.Get(n2.HTTPURL + "/healthz")
			require.Error(t, err, "a killed node answers nothing")
			_, err = topo.Kill(ctx, "n2")
			assert.ErrorContains(t, err, "kill n2: it is killed, not running")
			mechanism, err = topo.ResetConnections(ctx, []topology.Link{{"n1", "n2"}})
			require.NoError(t, err)
			assert.Equal(t, container.MechanismNone, mechanism, "a link to a killed node has no connection to reset")

			// The cut of a link to a killed node reaches its new namespace.
			_, err = topo.Partition(ctx, []topology.Link{{"n1", "n2"}})
			require.NoError(t, err)
			mechanism, err = topo.Restart(ctx, "n2")
			require.NoError(t, err)
			assert.Equal(t, container.MechanismRestart, mechanism)
			topologytest.RequireHealthy(t, n2)
			assert.Greater(t, topologytest.Metric(t, n2, "process_start_time_seconds"), startTime, "the restarted n2 is a new process")
			_, err = topo.Restart(ctx, "n2")
			assert.ErrorContains(t, err, "start n2: it is running")
			assert.Equal(t, 2, countMarkers(t, n2.Log), "start markers in %s", n2.Log)
			assert.Equal(t, 1, countMarkers(t, n1.Log), "start markers in %s", n1.Log)

			topologytest.WaitPeer(t, n2, "n3", true)
			time.Sleep(cfg.PeerTimeout + 500*time.Millisecond)
			topologytest.RequirePeers(t, n2, "n3")
			topologytest.RequirePeers(t, n1, "n3")
			st, err := container.SidecarStatus(ctx, topo, "n2")
			require.NoError(t, err)
			assert.Equal(t, 2, st.NFTRules, "rules in the restarted n2")

			require.NoError(t, topo.HealNetwork(ctx))
			allLinked(t)
		}},
		{"loss on a link", func(t *testing.T) {
			mechanism, err := topo.Degrade(ctx, []topology.Link{{"n2", "n3"}}, topology.LinkFault{Loss: 1})
			require.NoError(t, err)
			assert.Equal(t, container.MechanismNFTables, mechanism)
			topologytest.WaitPeer(t, n2, "n3", false)
			topologytest.WaitPeer(t, n3, "n2", false)
			topologytest.RequirePeers(t, n1, "n2", "n3")

			require.NoError(t, topo.HealNetwork(ctx))
			requireNoFaults(t, topo, "n2", "n3")
			allLinked(t)
		}},
		{"latency", func(t *testing.T) {
			ps := topologytest.NewPubSub(t, n1, n3, "latency")
			before := ps.Measure(t)
			mechanism, err := topo.Degrade(ctx, []topology.Link{{"n1", "n3"}}, topology.LinkFault{Latency: 150 * time.Millisecond, Jitter: 10 * time.Millisecond})
			if err != nil {
				// Kernels without netem, prio and NFQUEUE cannot delay one
				// peer's packets, and the error must name what is missing.
				require.ErrorIs(t, err, topology.ErrUnsupported)
				assert.ErrorContains(t, err, "unsupported: sch_")
				t.Logf("latency is not supported here: %v", err)
				requireNoFaults(t, topo, "n1", "n3")
				return
			}
			assert.Contains(t, []string{container.MechanismNetem, container.MechanismNFQueue}, mechanism)
			for _, name := range []string{"n1", "n3"} {
				st, err := container.SidecarStatus(ctx, topo, name)
				require.NoError(t, err)
				assert.True(t, st.HasDelay(), "status of %s: %+v", name, st)
				if mechanism == container.MechanismNFQueue {
					require.NotNil(t, st.NFQueue, "status of %s", name)
					assert.Equal(t, 150*time.Millisecond, st.NFQueue.Delay, "delay in %s", name)
					assert.Equal(t, 1, st.NFTRules, "one queue rule in %s, for the other end", name)
				}
			}
			requireNoFaults(t, topo, "n2")

			// A publish from n1 to n3 waits for n1's egress delay, and the
			// link stays up, because 150ms is below the peer timeout.
			during := ps.Measure(t)
			assert.GreaterOrEqual(t, during, 140*time.Millisecond, "publish from n1 to n3 with 150ms ± 10ms on the link")
			topologytest.RequirePeers(t, n1, "n2", "n3")
			st, err := container.SidecarStatus(ctx, topo, "n1")
			require.NoError(t, err)
			if st.NFQueue != nil {
				assert.Positive(t, st.NFQueue.Released, "packets that n1's queue released")
			}

			require.NoError(t, topo.HealNetwork(ctx))
			requireNoFaults(t, topo, "n1", "n3")
			after := ps.Measure(t)
			t.Logf("publish n1 to n3 with %s: %s before, %s with 150ms latency, %s after healing", mechanism, before, during, after)
			assert.Less(t, after, 100*time.Millisecond, "publish from n1 to n3 after healing")
		}},
		{"reset connections", func(t *testing.T) {
			reconnects := func() float64 {
				return topologytest.Metric(t, n1, `wscluster_peer_reconnects_total{peer="n2"}`) +
					topologytest.Metric(t, n2, `wscluster_peer_reconnects_total{peer="n1"}`)
			}
			before := reconnects()
			mechanism, err := topo.ResetConnections(ctx, []topology.Link{{"n2", "n1"}})
			require.NoError(t, err)
			assert.Contains(t, []string{container.MechanismSockDestroy, container.MechanismNFTablesReset}, mechanism)
			took := topologytest.WaitUntil(t, "n1 and n2 to link again after the reset", func() string {
				if reconnects() <= before {
					return "no reconnect counted yet"
				}
				return ""
			})
			t.Logf("the reset with %s was followed by a reconnect within %s", mechanism, took)
			allLinked(t)
			requireNoFaults(t, topo, "n1", "n2", "n3")
		}},
		{"invalid and unsupported faults", func(t *testing.T) {
			_, err := topo.Degrade(ctx, []topology.Link{{"n1", "n2"}}, topology.LinkFault{Loss: 1.5})
			assert.ErrorContains(t, err, "invalid link fault")
			_, err = topo.Degrade(ctx, []topology.Link{{"n1", "n2"}}, topology.LinkFault{Jitter: time.Millisecond})
			assert.ErrorContains(t, err, "jitter only with a latency")
			_, err = topo.ResetConnections(ctx, nil)
			assert.ErrorContains(t, err, "no links given")
			_, err = topo.ResetConnections(ctx, []topology.Link{{"n1", "n4"}})
			require.ErrorIs(t, err, topology.ErrUnknownNode)

			// One namespace takes one degradation, so n2 cannot lose 10% from
			// n1 and 20% from n3; the second call changes nothing.
			_, err = topo.Degrade(ctx, []topology.Link{{"n1", "n2"}}, topology.LinkFault{Loss: 0.1})
			require.NoError(t, err)
			_, err = topo.Degrade(ctx, []topology.Link{{"n2", "n3"}}, topology.LinkFault{Loss: 0.2})
			require.ErrorIs(t, err, topology.ErrUnsupported)
			assert.ErrorContains(t, err, "one network namespace takes one degradation")
			requireNoFaults(t, topo, "n3")
			require.NoError(t, topo.HealNetwork(ctx))
			requireNoFaults(t, topo, "n1", "n2", "n3")
		}},
		{"pause and resume", func(t *testing.T) {
			mechanism, err := topo.Pause(ctx, "n3")
			require.NoError(t, err)
			assert.Equal(t, container.MechanismPause, mechanism)
			_, _, err = topologytest.Get(n3.HTTPURL + "/healthz")
			require.Error(t, err, "a paused node answers nothing")
			assert.ErrorContains(t, err, "Timeout")
			_, err = topo.Pause(ctx, "n3")
			assert.ErrorContains(t, err, "pause n3: it is paused")
			_, err = topo.Restart(ctx, "n3")
			assert.ErrorContains(t, err, "start n3: it is paused")
			topologytest.WaitPeer(t, n1, "n3", false)

			mechanism, err = topo.Resume(ctx, "n3")
			require.NoError(t, err)
			assert.Equal(t, container.MechanismResume, mechanism)
			topologytest.RequireHealthy(t, n3)
			_, err = topo.Resume(ctx, "n3")
			assert.ErrorContains(t, err, "resume n3: it is running")
			allLinked(t)
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
			_, err = topo.Partition(ctx, []topology.Link{{"n2", "n2"}})
			require.ErrorIs(t, err, container.ErrUnknownLink)
			_, err = topo.Partition(ctx, nil)
			assert.ErrorContains(t, err, "no links given")
			requireNoFaults(t, topo, "n1", "n2", "n3")
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}

	// Close removes every container and the network, the paused n1 too,
	// and stays quiet when called again.
	_, err := topo.Pause(ctx, "n1")
	require.NoError(t, err)
	require.NoError(t, topo.Close(ctx))
	containers, networks, err := container.ListLabelled(ctx, container.LabelRun, topo.RunID())
	require.NoError(t, err)
	assert.Empty(t, containers, "containers left after Close")
	assert.Empty(t, networks, "networks left after Close")
	for _, n := range nodes {
		_, _, err := topologytest.Get(n.HTTPURL + "/healthz")
		require.Error(t, err, "%s after Close", n.ID)
	}
	require.NoError(t, topo.Close(ctx))
	_, err = topo.Restart(ctx, "n2")
	assert.ErrorContains(t, err, "closed")
	assert.ErrorContains(t, topo.HealNetwork(ctx), "closed")
}

// TestDisconnectFallback forces the fallback of a kernel without
// nftables: a partition that isolates a node disconnects it from the
// network, and one that does not is rejected.
func TestDisconnectFallback(t *testing.T) {
	requireDocker(t)
	topo := startTopology(t, newConfig(t, "mesh", 3))
	nodes := topo.Nodes()
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	for _, n := range nodes {
		topologytest.WaitConnectedPeers(t, n, 2)
	}
	require.NoError(t, container.ForceDisconnect(topo))

	_, err := topo.Partition(ctx, []topology.Link{{"n1", "n2"}})
	require.ErrorIs(t, err, topology.ErrUnsupported)
	assert.ErrorContains(t, err, "neither end of n1-n2")

	mechanism, err := topo.Partition(ctx, []topology.Link{{"n1", "n3"}, {"n2", "n3"}})
	require.NoError(t, err)
	assert.Equal(t, container.MechanismDisconnect, mechanism)
	topologytest.WaitPeer(t, n1, "n3", false)
	topologytest.WaitPeer(t, n2, "n3", false)
	topologytest.RequirePeers(t, n1, "n2")

	require.NoError(t, topo.HealNetwork(ctx))
	topologytest.WaitUntil(t, "n3 to answer again after it was connected", func() string {
		if _, _, err := topologytest.Get(n3.HTTPURL + "/healthz"); err != nil {
			return err.Error()
		}
		return ""
	})
	for _, n := range nodes {
		topologytest.WaitConnectedPeers(t, n, 2)
	}
}
