package cluster_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/internal/faultproxy"
	"github.com/wscluster/wscluster/internal/redistest"
)

// A Redis link whose round trip is longer than two heartbeat intervals is
// slow, not dead: the node keeps its subscription and keeps delivering.
func TestRedisSlowLinkKeepsSubscription(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy, err := faultproxy.New("127.0.0.1:0", srv.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	// n1 reaches Redis through the proxy. The peer timeout leaves room for
	// the slow link, so that only the subscription's own check is tested.
	slowTimings := func(cfg *config.Node) { cfg.PeerTimeout = 2 * time.Second }
	n2 := startNode(t, func() config.Node { cfg := redisNodeConfig("n2", srv); slowTimings(&cfg); return cfg }())
	cfg1 := redisNodeConfig("n1", srv)
	cfg1.RedisAddr = proxy.Addr()
	slowTimings(&cfg1)
	n1 := startNode(t, cfg1)
	nodes := map[string]*testNode{"n1": n1, "n2": n2}
	waitRedisMesh(t, nodes)

	// Each direction of the proxy adds 150 ms, so a round trip takes
	// 300 ms, three heartbeat intervals.
	const series = "wscluster_redis_resubscribes_total"
	before := metricValue(t, n1, series)
	proxy.SetLatency(150*time.Millisecond, 0)
	time.Sleep(20 * testHeartbeat)
	assert.Equal(t, before, metricValue(t, n1, series), "n1 subscribed again on a slow but working link")
	code, _ := fetchStatus(t, n1, "/readyz")
	assert.Equal(t, 200, code, "n1 not ready on a slow but working link")

	const channel = "slow"
	subs := subscribeOnEach(t, nodes, channel)
	pubs := publisherOnEach(t, nodes)
	publishAll(t, channel, pubs, 0, 10, 4)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, 10))
	}
}
