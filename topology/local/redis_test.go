package local_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
	"github.com/wscluster/wscluster/topology/topologytest"
)

// TestRedisFaults runs a two-node Redis cluster through partitions from
// Redis and a crash and pause of Redis.
func TestRedisFaults(t *testing.T) {
	requireRedis(t)
	topo := startTopology(t, newConfig(t, "redis", 2))
	nodes := topo.Nodes()
	n1, n2 := nodes[0], nodes[1]
	ctx := context.Background()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ready and publish through Redis", func(t *testing.T) {
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusOK)
			}
			ps := topologytest.NewPubSub(t, n1, n2, "news")
			t.Logf("a publish from n1 reached n2 in %s", ps.Measure(t))
		}},
		{"partition from Redis", func(t *testing.T) {
			mechanism, err := topo.Partition(ctx, []topology.Link{{topology.Redis, "n1"}})
			require.NoError(t, err)
			assert.Equal(t, "tcp-proxy", mechanism)
			t.Logf("/readyz of n1 turned 503 %s after the partition", topologytest.WaitReadyz(t, n1, http.StatusServiceUnavailable))
			requireReadyzCode(t, n2, http.StatusOK)

			require.NoError(t, topo.HealNetwork(ctx))
			t.Logf("/readyz of n1 turned 200 %s after healing", topologytest.WaitReadyz(t, n1, http.StatusOK))
		}},
		{"kill and restart Redis", func(t *testing.T) {
			mechanism, err := topo.Kill(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, "SIGKILL", mechanism)
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusServiceUnavailable)
			}
			_, err = topo.Kill(ctx, topology.Redis)
			assert.ErrorContains(t, err, "kill redis: it is killed, not running")

			mechanism, err = topo.Restart(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, "restart", mechanism)
			for _, n := range nodes {
				topologytest.WaitReadyz(t, n, http.StatusOK)
			}
			ps := topologytest.NewPubSub(t, n2, n1, "after-restart")
			ps.Measure(t)
			assert.Equal(t, 2, countMarkers(t, filepath.Join(filepath.Dir(n1.Log), "redis.log")), "start markers in redis.log")
		}},
		{"pause and resume Redis", func(t *testing.T) {
			mechanism, err := topo.Pause(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, "SIGSTOP", mechanism)
			topologytest.WaitReadyz(t, n2, http.StatusServiceUnavailable)

			mechanism, err = topo.Resume(ctx, topology.Redis)
			require.NoError(t, err)
			assert.Equal(t, "SIGCONT", mechanism)
			topologytest.WaitReadyz(t, n2, http.StatusOK)
		}},
		{"degrade and reset the Redis link", func(t *testing.T) {
			// The node's Redis subscription must echo its own heartbeat
			// within two heartbeat intervals (400ms here), so the latency
			// stays well below 200ms each way.
			ps := topologytest.NewPubSub(t, n2, n1, "slow")
			mechanism, err := topo.Degrade(ctx, []topology.Link{{"n1", topology.Redis}}, topology.LinkFault{Latency: 100 * time.Millisecond})
			require.NoError(t, err)
			assert.Equal(t, "tcp-proxy", mechanism)
			assert.GreaterOrEqual(t, ps.Measure(t), 100*time.Millisecond, "publish from n2 to n1 with 100ms between n1 and Redis")
			require.NoError(t, topo.HealNetwork(ctx))

			before := topologytest.Metric(t, n1, "wscluster_redis_reconnects_total")
			_, err = topo.ResetConnections(ctx, []topology.Link{{"n1", topology.Redis}})
			require.NoError(t, err)
			topologytest.WaitUntil(t, "n1 to reconnect to Redis", func() string {
				if topologytest.Metric(t, n1, "wscluster_redis_reconnects_total") <= before {
					return "no reconnect counted yet"
				}
				return ""
			})
			topologytest.WaitReadyz(t, n1, http.StatusOK)
		}},
		{"links between nodes do not exist", func(t *testing.T) {
			_, err := topo.Partition(ctx, []topology.Link{{"n1", "n2"}})
			require.ErrorIs(t, err, local.ErrUnknownLink)
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
