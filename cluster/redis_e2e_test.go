package cluster_test

// End-to-end tests of the redis engine: whole nodes on loopback sharing a
// real redis-server child process, real WebSocket clients, and Redis faults
// made by killing, restarting, pausing (SIGSTOP) and reconfiguring that
// process. Timings measured here are logged with t.Logf, which shows them
// under -v.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/internal/redistest"
	"github.com/wscluster/wscluster/server"
)

// redisNodeConfig returns the configuration of a redis engine node on srv
// with the test timings.
func redisNodeConfig(id string, srv *redistest.Server) config.Node {
	cfg := config.Default()
	cfg.NodeID = id
	cfg.Engine = "redis"
	cfg.Listen = "127.0.0.1:0"
	cfg.RedisAddr = srv.Addr()
	cfg.HeartbeatInterval = testHeartbeat
	cfg.PeerTimeout = testPeerTimeout
	return cfg
}

// startRedisCluster starts one in-process node per id on srv, with mutate
// applied to each configuration, and waits until every node is ready and
// hears every other.
func startRedisCluster(t *testing.T, srv *redistest.Server, ids []string, mutate func(*config.Node)) map[string]*testNode {
	t.Helper()
	nodes := make(map[string]*testNode)
	for _, id := range ids {
		cfg := redisNodeConfig(id, srv)
		if mutate != nil {
			mutate(&cfg)
		}
		nodes[id] = startNode(t, cfg)
	}
	waitRedisMesh(t, nodes)
	return nodes
}

// waitRedisMesh waits until every node is ready and lists every other node
// as connected.
func waitRedisMesh(t *testing.T, nodes map[string]*testNode) {
	t.Helper()
	for id, n := range nodes {
		waitReadyz(t, n, 200)
		var others []string
		for other := range nodes {
			if other != id {
				others = append(others, other)
			}
		}
		waitConnected(t, n, others...)
	}
}

// waitReadyz waits until /readyz of n returns code and returns how long
// that took.
func waitReadyz(t testing.TB, n httpNode, code int) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool {
		got, s := fetchStatus(t, n, "/readyz")
		return got == code && s.Ready == (code == 200)
	}, waitTimeout, pollInterval, "/readyz of %s never returned %d", n.httpAddr(), code)
	return time.Since(start)
}

// healthzCode returns the status code of /healthz of n.
func healthzCode(t testing.TB, n httpNode) int {
	t.Helper()
	resp, err := http.Get("http://" + n.httpAddr() + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode
}

// requireBackplaneUnavailable requires err to be the JSON-RPC error 1005.
func requireBackplaneUnavailable(t testing.TB, err error) {
	t.Helper()
	var rpcErr *client.RPCError
	require.True(t, errors.As(err, &rpcErr), "want error 1005, got %v", err)
	require.Equal(t, client.CodeBackplaneUnavailable, rpcErr.Code, "want error 1005, got %v", err)
}

// startNodeCapturingLog starts a node as startNode does, and also returns
// its log output.
func startNodeCapturingLog(t *testing.T, cfg config.Node) (*testNode, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	testWriter := &testLogWriter{t: t}
	t.Cleanup(func() {
		testWriter.mu.Lock()
		testWriter.done = true
		testWriter.mu.Unlock()
	})
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(testWriter, logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	node, err := server.New(cfg, logger)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{id: cfg.NodeID, cfg: cfg, node: node, addr: ln.Addr().String(), cancel: cancel, served: make(chan error, 1)}
	go func() { n.served <- node.Serve(ctx, ln) }()
	t.Cleanup(func() { n.stop(t) })
	return n, logs
}

// startRedisProcess runs `wscluster serve --engine redis` on srv and waits
// until /healthz returns 200. It is killed at the end of the test if still
// running, and its output is logged when the test fails.
func startRedisProcess(t *testing.T, binary, id string, srv *redistest.Server) *processNode {
	t.Helper()
	p := &processNode{id: id, addr: loopbackAddr(freePort(t)), output: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve",
		"--listen", p.addr,
		"--node-id", id,
		"--engine", "redis",
		"--redis-addr", srv.Addr(),
		"--heartbeat-interval", testHeartbeat.String(),
		"--peer-timeout", testPeerTimeout.String(),
	)
	p.cmd.Env = processEnv()
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	require.NoError(t, p.cmd.Start())
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("output of node process %s:\n%s", p.id, p.output.String())
		}
	})
	require.Eventually(t, p.healthy, waitTimeout, pollInterval,
		"node process %s never answered /healthz; output:\n%s", id, p.output.String())
	return p
}

// waitMarker publishes a marker message through pub and waits until every
// subscriber in subs received it, so that anything published earlier
// through the same node had its chance to arrive too.
func waitMarker(t *testing.T, pub *recorder, channel string, subs map[string]*recorder) {
	t.Helper()
	msgID, err := pub.Publish(callContext(t), channel, map[string]string{"marker": "end"}, 0)
	require.NoError(t, err)
	for name, sub := range subs {
		require.Eventually(t, func() bool {
			for _, m := range sub.messages(channel) {
				if m.MsgID == msgID {
					return true
				}
			}
			return false
		}, waitTimeout, pollInterval, "subscriber %s never received the marker", name)
	}
}

// withoutMarkers returns msgs without the markers of waitMarker.
func withoutMarkers(msgs []client.Message) []client.Message {
	var out []client.Message
	for _, m := range msgs {
		if !strings.Contains(string(m.Data), `"marker"`) {
			out = append(out, m)
		}
	}
	return out
}

func TestRedisDeliversInEveryDirection(t *testing.T) {
	t.Parallel()
	for _, size := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			var ids []string
			for i := 1; i <= size; i++ {
				ids = append(ids, fmt.Sprintf("n%d", i))
			}
			nodes := startRedisCluster(t, srv, ids, nil)
			const channel = "news"
			const perPublisher = 200

			subs := subscribeOnEach(t, nodes, channel)
			pubs := publisherOnEach(t, nodes)

			// Every tenth message is QoS 1, and the publishers run at once.
			publishAll(t, channel, pubs, 0, perPublisher, 10)
			for id, sub := range subs {
				waitDelivery(t, sub, id, channel, seriesLengths(pubs, perPublisher))
			}
		})
	}
}

func TestRedisPresenceUnionAndKillPurge(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)
	srv := redistest.Start(t)
	const channel = "room"

	// Two in-process observers and a victim process share the Redis
	// server. The victim is killed without a chance to say goodbye.
	observers := startRedisCluster(t, srv, []string{"obs-1", "obs-2"}, nil)
	victim := startRedisProcess(t, binary, "victim", srv)
	waitReadyz(t, victim, 200)
	waitConnected(t, observers["obs-1"], "obs-2", "victim")
	waitConnected(t, observers["obs-2"], "obs-1", "victim")

	member := dialRecorder(t, victim)
	_, err := member.Join(callContext(t), channel, "bob", map[string]string{"on": "victim"})
	require.NoError(t, err)
	watchers := map[string]*recorder{}
	for id, obs := range observers {
		w := dialRecorder(t, obs)
		_, err := w.Join(callContext(t), channel, "watcher-"+id, nil)
		require.NoError(t, err)
		watchers[id] = w
	}

	// Every node, the victim included, lists the members of all three.
	union := []string{"bob", "watcher-obs-1", "watcher-obs-2"}
	all := map[string]*recorder{"victim": member, "obs-1": watchers["obs-1"], "obs-2": watchers["obs-2"]}
	converged := waitRosters(t, all, channel, union, waitTimeout)
	t.Logf("rosters of three nodes converged %s after the last join", converged.Round(time.Millisecond))

	killed := time.Now()
	victim.kill(t)

	// The contract allows --peer-timeout plus one heartbeat. Twice the
	// peer timeout leaves room for a loaded machine.
	bound := 2 * testPeerTimeout
	for id, w := range watchers {
		purge := w.waitLeave(t, channel, "bob", waitTimeout).Sub(killed)
		t.Logf("%s: presence.leave of the killed node's member %s after SIGKILL (peer timeout %s, heartbeat %s)",
			id, purge.Round(time.Millisecond), testPeerTimeout, testHeartbeat)
		assert.LessOrEqual(t, purge, bound, "%s purged the killed node's member too late", id)
		assert.Equal(t, []string{"watcher-obs-1", "watcher-obs-2"}, rosterOf(t, w.Client, channel))
	}
}

func TestRedisRestartKeepsSubscriptions(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "after-restart"
	subs := subscribeOnEach(t, nodes, channel)
	pubs := publisherOnEach(t, nodes)

	// Redis loses every subscription and all its state in a restart.
	srv.Kill()
	for id, n := range nodes {
		took := waitReadyz(t, n, 503)
		t.Logf("%s: /readyz 503 %s after Redis was killed", id, took.Round(time.Millisecond))
		assert.Equal(t, 200, healthzCode(t, n), "%s must keep serving while Redis is down", id)
	}
	srv.Restart()
	for id, n := range nodes {
		took := waitReadyz(t, n, 200)
		t.Logf("%s: /readyz 200 %s after Redis restarted", id, took.Round(time.Millisecond))
	}
	waitRedisMesh(t, nodes)

	// The subscribers from before the outage receive what is published
	// after it, from both nodes.
	publishAll(t, channel, pubs, 0, 50, 5)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, 50))
	}
}

func TestRedisPauseLongerThanPeerTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "after-pause"
	subs := subscribeOnEach(t, nodes, channel)
	pubs := publisherOnEach(t, nodes)

	// A stopped Redis keeps its sockets open, so only the missing echo of
	// the node's own heartbeat shows that the backplane is unusable.
	srv.Pause()
	paused := time.Now()
	for id, n := range nodes {
		waitReadyz(t, n, 503)
		t.Logf("%s: /readyz 503 %s after SIGSTOP (peer timeout %s)", id, time.Since(paused).Round(time.Millisecond), testPeerTimeout)
	}

	// The pause lasts two more peer timeouts, so every node also declares
	// the other down, then Redis continues.
	time.Sleep(2 * testPeerTimeout)
	srv.Resume()
	resumed := time.Now()
	for id, n := range nodes {
		waitReadyz(t, n, 200)
		t.Logf("%s: /readyz 200 %s after SIGCONT", id, time.Since(resumed).Round(time.Millisecond))
	}
	waitRedisMesh(t, nodes)

	publishAll(t, channel, pubs, 0, 50, 5)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, 50))
	}
}

func TestRedisWrongPasswordStaysNotReady(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--requirepass", "right-password")
	cfg := redisNodeConfig("n1", srv)
	cfg.RedisPassword = "wrong-password"
	n, logs := startNodeCapturingLog(t, cfg)

	// For ten peer timeouts the node keeps serving, stays not ready, and
	// logs why.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "WRONGPASS") }, waitTimeout, pollInterval,
		"the node never logged the authentication error")
	deadline := time.Now().Add(10 * testPeerTimeout)
	for time.Now().Before(deadline) {
		code, s := fetchStatus(t, n, "/readyz")
		require.Equal(t, 503, code, "a node that Redis rejects must not be ready")
		require.False(t, s.Ready)
		require.Equal(t, 200, healthzCode(t, n), "the node must keep serving")
		time.Sleep(testHeartbeat)
	}
	assert.NotContains(t, logs.String(), "wrong-password", "the password must not be logged")

	// Clients are still served, and a publish is rejected with 1005.
	c := dialRecorder(t, n)
	_, err := c.Publish(callContext(t), "news", 1, 0)
	requireBackplaneUnavailable(t, err)

	// Once Redis accepts the node's password, the node retries and
	// becomes ready without a restart.
	require.NoError(t, srv.Client().ConfigSet(callContext(t), "requirepass", "wrong-password").Err())
	took := waitReadyz(t, n, 200)
	t.Logf("ready %s after Redis accepted the password", took.Round(time.Millisecond))
}

func TestRedisCarriesMessageNearLimit(t *testing.T) {
	t.Parallel()
	const limit = 65536
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, func(cfg *config.Node) { cfg.MaxMessageBytes = limit })
	sub := dialRecorder(t, nodes["n2"])
	require.NoError(t, sub.Subscribe(callContext(t), "big"))

	requireNearLimitCrosses(t, nodes["n1"], sub, limit, "Redis")
}

func TestRedisResubscribesAfterClientKill(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "after-kill"
	subs := subscribeOnEach(t, nodes, channel)
	pubs := publisherOnEach(t, nodes)
	const reconnects = "wscluster_redis_reconnects_total"
	before := map[string]float64{}
	for id, n := range nodes {
		before[id] = metricValue(t, n, reconnects)
	}

	// Redis closes every subscriber connection; the publishing
	// connections stay.
	killed, err := srv.Client().ClientKillByFilter(callContext(t), "TYPE", "pubsub").Result()
	require.NoError(t, err)
	require.Equal(t, int64(len(nodes)), killed, "one subscription per node")

	for id, n := range nodes {
		require.Eventually(t, func() bool { return metricValue(t, n, reconnects) > before[id] }, waitTimeout, pollInterval,
			"%s did not count the lost subscription", id)
	}
	waitRedisMesh(t, nodes)

	publishAll(t, channel, pubs, 0, 50, 5)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, 50))
	}
}

func TestRedisRejectsPublishWhileNotReady(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "rejected"
	subs := subscribeOnEach(t, nodes, channel)
	pub := dialRecorder(t, nodes["n1"])

	srv.Kill()
	waitReadyz(t, nodes["n1"], 503)
	_, err := pub.Publish(callContext(t), channel, map[string]string{"must": "not arrive"}, 1)
	requireBackplaneUnavailable(t, err)

	// After Redis returns, replay and sync run between the nodes. The
	// marker published after them arrives, and the rejected publish must
	// not have arrived before it, on either node.
	srv.Restart()
	waitRedisMesh(t, nodes)
	waitMarker(t, pub, channel, subs)
	for id, sub := range subs {
		assert.Empty(t, withoutMarkers(sub.messages(channel)), "subscriber on %s received a publish that was rejected", id)
	}
}

func TestRedisTotalOrderAgreesAcrossNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2", "n3"}, func(cfg *config.Node) { cfg.Ordering = "total" })
	const channel = "ordered"
	const perPublisher = 200
	subs := subscribeOnEach(t, nodes, channel)
	pubs := map[string]*recorder{"pub-n1": dialRecorder(t, nodes["n1"]), "pub-n2": dialRecorder(t, nodes["n2"])}

	publishAll(t, channel, pubs, 0, perPublisher, 10)
	orders := map[string][]string{}
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, perPublisher))
		for _, m := range sub.messages(channel) {
			if !m.Redelivered {
				orders[id] = append(orders[id], m.MsgID)
			}
		}
	}

	// Every subscriber saw the interleaving of the two publishers that
	// Redis chose.
	ids := make([]string, 0, len(orders))
	for id := range orders {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids[1:] {
		assert.Equal(t, orders[ids[0]], orders[id], "subscribers on %s and %s saw different orders", ids[0], id)
	}
}

// publishOutcome is the result of one publish and when it arrived.
type publishOutcome struct {
	msgID string
	err   error
	at    time.Time
}

func TestRedisPublishWaitsForPublishReply(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "paused"
	subs := subscribeOnEach(t, nodes, channel)
	pub := dialRecorder(t, nodes["n1"])

	// Right after SIGSTOP the node is still ready, because its last echo
	// is younger than the peer timeout, so it takes the publish and waits
	// for a PUBLISH reply that cannot come while Redis is stopped.
	srv.Pause()
	paused := time.Now()
	outcome := make(chan publishOutcome, 1)
	go func() {
		msgID, err := pub.Publish(callContext(t), channel, map[string]string{"sent": "during pause"}, 0)
		outcome <- publishOutcome{msgID: msgID, err: err, at: time.Now()}
	}()

	// Redis stays stopped for five peer timeouts, unless the publish
	// returns first.
	var result publishOutcome
	returnedDuringPause := false
	select {
	case result = <-outcome:
		returnedDuringPause = true
	case <-time.After(5 * testPeerTimeout):
	}
	srv.Resume()
	resumed := time.Now()
	if !returnedDuringPause {
		select {
		case result = <-outcome:
		case <-time.After(waitTimeout):
			t.Fatal("the publish got no result after Redis continued")
		}
	}

	if result.err == nil {
		t.Logf("publish succeeded %s after SIGSTOP, %s after SIGCONT",
			result.at.Sub(paused).Round(time.Millisecond), result.at.Sub(resumed).Round(time.Millisecond))
		assert.False(t, result.at.Before(resumed), "the publish succeeded while Redis could not have answered")
		return
	}
	var rpcErr *client.RPCError
	require.True(t, errors.As(result.err, &rpcErr), "want error 1005 or 1007, got %v", result.err)
	t.Logf("publish failed with %d %s after SIGSTOP (peer timeout %s)", rpcErr.Code, result.at.Sub(paused).Round(time.Millisecond), testPeerTimeout)
	assert.GreaterOrEqual(t, result.at.Sub(paused), testPeerTimeout/2, "the publish failed before Redis had a chance to answer")

	// The PUBLISH was written to the paused Redis, which runs it when it
	// continues. So the node must not report it as not taken: it returns
	// 1007, and the message then reaches every node, by Redis or by replay.
	require.Equal(t, client.CodePublishUnconfirmed, rpcErr.Code, "a PUBLISH written to a paused Redis was reported as not taken")
	waitRedisMesh(t, nodes)
	waitMarker(t, pub, channel, subs)
	for id, sub := range subs {
		require.Eventually(t, func() bool { return len(withoutMarkers(sub.messages(channel))) > 0 }, waitTimeout, pollInterval,
			"subscriber on %s never received the publish that got 1007", id)
		assert.Len(t, withoutMarkers(sub.messages(channel)), 1, "subscriber on %s", id)
	}
}

func TestRedisRecoversFromOutputBufferKill(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "burst"
	sub := dialRecorder(t, nodes["n2"])
	require.NoError(t, sub.Subscribe(callContext(t), channel))
	pub := dialRecorder(t, nodes["n1"])
	const reconnects = "wscluster_redis_reconnects_total"
	before := metricValue(t, nodes["n2"], reconnects)

	// Redis closes a subscriber whose unread output passes 64 KiB, or
	// stays above 32 KiB for a second. A burst of 100 KiB messages from a
	// plain Redis client passes the hard limit at once, because Redis
	// queues each whole message before it writes any of it. The nodes
	// drop these messages as malformed, but their subscriptions are
	// closed first.
	require.NoError(t, srv.Client().ConfigSet(callContext(t), "client-output-buffer-limit", "pubsub 64kb 32kb 1").Err())
	burst := srv.Client().Pipeline()
	junk := strings.Repeat("x", 100<<10)
	for range 20 {
		burst.Publish(callContext(t), nodes["n1"].cfg.RedisChannel, junk)
	}
	_, err := burst.Exec(callContext(t))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return metricValue(t, nodes["n2"], reconnects) > before }, waitTimeout, pollInterval,
		"the burst did not make Redis close a subscription; the test did not exercise the limit")

	// Once the nodes have subscribed again, later messages arrive, with
	// the limit still in force.
	waitRedisMesh(t, nodes)
	const count = 50
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, publishSeries(ctx, pub.Client, channel, "pub-n1", 0, count, 5))
	require.Eventually(t, func() bool {
		return summarize(sub.messages(channel)).hasAll(map[string]int{"pub-n1": count})
	}, waitTimeout, pollInterval, "the messages after the resubscribe did not all arrive")
	report := summarize(sub.messages(channel))
	wantSeqs := make([]int, count)
	for i := range wantSeqs {
		wantSeqs[i] = i
	}
	assert.Equal(t, wantSeqs, report.seqs["pub-n1"], "the messages after the resubscribe must arrive once each, in order")
}
