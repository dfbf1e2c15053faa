package container_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/container"
	"github.com/wscluster/wscluster/topology/topologytest"
)

// TestRedisFaults runs a two-node Redis cluster in containers through a
// partition from Redis and a crash and pause of Redis.
func TestRedisFaults(t *testing.T) {
	requireDocker(t)
	topo := startTopology(t, newConfig(t, "redis", 2))
	nodes := topo.Nodes()
	n1, n2 := nodes[0], nodes[1]
	ctx := context.Background()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ready", func(t *testing.T) {
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusOK)
			}
			assert.Equal(t, []topology.Link{{"n1", topology.Redis}, {"n2", topology.Redis}}, topo.Links())
		}},
		{"partition from Redis", func(t *testing.T) {
			mechanism, err := topo.Partition(ctx, []topology.Link{{topology.Redis, "n1"}})
			require.NoError(t, err)
			assert.Equal(t, container.MechanismNFTables, mechanism)
			t.Logf("/readyz of n1 turned 503 %s after the partition", topologytest.WaitReadyz(t, n1, http.StatusServiceUnavailable))
			code, body, err := topologytest.Get(n2.HTTPURL + "/readyz")
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, code, "/readyz of n2: %s", body)
			st, err := container.SidecarStatus(ctx, topo, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, 2, st.NFTRules, "rules in the namespace of Redis")

			require.NoError(t, topo.HealNetwork(ctx))
			t.Logf("/readyz of n1 turned 200 %s after healing", topologytest.WaitReadyz(t, n1, http.StatusOK))
			requireNoFaults(t, topo, "n1", "n2", topology.Redis)
		}},
		{"reset connections to Redis", func(t *testing.T) {
			mechanism, err := topo.ResetConnections(ctx, []topology.Link{{topology.Redis, "n1"}})
			require.NoError(t, err)
			assert.Contains(t, []string{container.MechanismSockDestroy, container.MechanismNFTablesReset}, mechanism)
			requireNoFaults(t, topo, "n1", topology.Redis)

			// n1 reconnects to Redis, so its publishes reach n2 again.
			t.Logf("/readyz of n1 is 200 %s after the reset", topologytest.WaitReadyz(t, n1, http.StatusOK))
			ps := topologytest.NewPubSub(t, n1, n2, "after-reset")
			t.Logf("a publish from n1 reached n2 in %s after the reset", ps.Measure(t))
		}},
		{"kill and restart Redis", func(t *testing.T) {
			mechanism, err := topo.Kill(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, container.MechanismKill, mechanism)
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusServiceUnavailable)
			}
			mechanism, err = topo.Restart(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, container.MechanismRestart, mechanism)
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusOK)
			}
			assert.Equal(t, 2, countMarkers(t, filepath.Join(filepath.Dir(n1.Log), "redis.log")), "start markers in redis.log")
		}},
		{"pause and resume Redis", func(t *testing.T) {
			mechanism, err := topo.Pause(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, container.MechanismPause, mechanism)
			topologytest.WaitReadyz(t, n2, http.StatusServiceUnavailable)

			mechanism, err = topo.Resume(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, container.MechanismResume, mechanism)
			topologytest.WaitReadyz(t, n2, http.StatusOK)
		}},
		{"links between nodes do not exist", func(t *testing.T) {
			_, err := topo.Partition(ctx, []topology.Link{{"n1", "n2"}})
			require.ErrorIs(t, err, container.ErrUnknownLink)
			_, err = topo.Kill(ctx, "n3")
			require.ErrorIs(t, err, topology.ErrUnknownNode)
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}
}
