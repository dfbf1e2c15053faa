package cluster_test

// End-to-end tests of the mesh engine: whole nodes on loopback, real
// WebSocket clients, fault proxies on the mesh links and, where a crash
// must be real, node processes killed with SIGKILL. Timings measured here
// (purge after a kill, convergence after a heal) are logged with t.Logf,
// which shows them under -v.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/internal/faultproxy"
)

// publishAll runs one publishSeries per publisher at once and fails the
// test on the first error.
func publishAll(t testing.TB, channel string, publishers map[string]*recorder, first, count, qos1Every int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(publishers))
	for name, pub := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			errs <- publishSeries(ctx, pub.Client, channel, name, first, count, qos1Every)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// subscribeOnEach subscribes one new client per node to channel.
func subscribeOnEach(t *testing.T, nodes map[string]*testNode, channel string) map[string]*recorder {
	t.Helper()
	subs := make(map[string]*recorder)
	for id, n := range nodes {
		r := dialRecorder(t, n)
		require.NoError(t, r.Subscribe(callContext(t), channel))
		subs[id] = r
	}
	return subs
}

// publisherOnEach connects one publisher client per node, named "pub-<node id>".
func publisherOnEach(t *testing.T, nodes map[string]*testNode) map[string]*recorder {
	t.Helper()
	pubs := make(map[string]*recorder)
	for id, n := range nodes {
		pubs["pub-"+id] = dialRecorder(t, n)
	}
	return pubs
}

func seriesLengths(publishers map[string]*recorder, count int) map[string]int {
	want := make(map[string]int)
	for name := range publishers {
		want[name] = count
	}
	return want
}

func TestMeshDeliversInEveryDirection(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2", "n3"}, nil)
	const channel = "news"
	const perPublisher = 200

	// Every link gets a little latency with jitter, as between hosts. The
	// proxies keep each link's byte order, as TCP does.
	for _, p := range c.proxies {
		p.SetLatency(2*time.Millisecond, 2*time.Millisecond)
	}

	subs := subscribeOnEach(t, c.nodes, channel)
	pubs := publisherOnEach(t, c.nodes)

	// Every tenth message is QoS 1, and the three publishers run at once.
	publishAll(t, channel, pubs, 0, perPublisher, 10)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, perPublisher))
	}
}

func TestMeshPurgesKilledProcess(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)
	const channel = "room"

	// Two linked in-process observers watch a victim, a real process that
	// links to both and is then killed without a chance to say goodbye.
	cfg1 := nodeConfig("obs-1", freePort(t))
	cfg2 := nodeConfig("obs-2", freePort(t))
	cfg1.Peers = []string{cfg2.ClusterAdvertise}
	observers := map[string]*testNode{"obs-1": startNode(t, cfg1), "obs-2": startNode(t, cfg2)}
	victim := startProcess(t, binary, processArgs{
		id: "victim", clusterPort: freePort(t), peers: []string{cfg1.ClusterAdvertise, cfg2.ClusterAdvertise},
		heartbeat: testHeartbeat, peerTimeout: testPeerTimeout,
	})
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
	waitRosters(t, watchers, channel, []string{"bob", "watcher-obs-1", "watcher-obs-2"}, waitTimeout)

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

func TestMeshGracefulShutdownPurgesAtOnce(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)
	const channel = "room"

	// A long peer timeout, so that only the leave message can explain a
	// quick purge.
	const peerTimeout = 3 * time.Second
	cfg := nodeConfig("obs", freePort(t))
	cfg.PeerTimeout = peerTimeout
	observer := startNode(t, cfg)
	leaving := startProcess(t, binary, processArgs{
		id: "leaving", clusterPort: freePort(t), peers: []string{cfg.ClusterAdvertise},
		heartbeat: testHeartbeat, peerTimeout: peerTimeout,
	})
	waitConnected(t, observer, "leaving")

	member := dialRecorder(t, leaving)
	_, err := member.Join(callContext(t), channel, "carol", nil)
	require.NoError(t, err)
	watcher := dialRecorder(t, observer)
	_, err = watcher.Join(callContext(t), channel, "watcher", nil)
	require.NoError(t, err)
	waitRosters(t, map[string]*recorder{"obs": watcher}, channel, []string{"carol", "watcher"}, waitTimeout)

	terminated := time.Now()
	leaving.terminate(t)
	purge := watcher.waitLeave(t, channel, "carol", waitTimeout).Sub(terminated)
	t.Logf("presence.leave of a member of a node stopped with SIGTERM after %s (peer timeout %s)",
		purge.Round(time.Millisecond), peerTimeout)
	assert.Less(t, purge, peerTimeout/3, "a leaving node's members must be purged at once, not at the peer timeout")

	// The process has exited, so nothing may bring its member back: a
	// heartbeat or sync sent after the leave would revive it until the
	// peer timeout.
	assert.Equal(t, []string{"watcher"}, rosterOf(t, watcher.Client, channel))
	events := watcher.presenceEvents(channel)
	last := events[len(events)-1]
	assert.Equal(t, client.MethodPresenceLeave, last.Method, "an event followed the leave: %+v", last.Presence)

	closeErr := member.CloseError()
	require.NotNil(t, closeErr, "the client of the stopped node got no close frame")
	assert.Equal(t, 1001, closeErr.Code)
}

func TestMeshRestartPurgesOldIncarnation(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)
	const channel = "room"

	// With a long peer timeout, a purge before it expires can only come
	// from the new incarnation's handshake.
	const peerTimeout = 3 * time.Second
	cfg := nodeConfig("obs", freePort(t))
	cfg.PeerTimeout = peerTimeout
	observer := startNode(t, cfg)
	args := processArgs{
		id: "phoenix", clusterPort: freePort(t), peers: []string{cfg.ClusterAdvertise},
		heartbeat: testHeartbeat, peerTimeout: peerTimeout,
	}
	first := startProcess(t, binary, args)
	waitConnected(t, observer, "phoenix")

	member := dialRecorder(t, first)
	_, err := member.Join(callContext(t), channel, "dave", nil)
	require.NoError(t, err)
	watcher := dialRecorder(t, observer)
	_, err = watcher.Join(callContext(t), channel, "watcher", nil)
	require.NoError(t, err)
	waitRosters(t, map[string]*recorder{"obs": watcher}, channel, []string{"dave", "watcher"}, waitTimeout)

	killed := time.Now()
	first.kill(t)
	second := startProcess(t, binary, args)
	purge := watcher.waitLeave(t, channel, "dave", waitTimeout).Sub(killed)
	t.Logf("presence.leave of the old incarnation's member %s after SIGKILL and restart (peer timeout %s)",
		purge.Round(time.Millisecond), peerTimeout)
	assert.Less(t, purge, peerTimeout, "the new incarnation must purge the old one's members at once")
	waitConnected(t, observer, "phoenix")

	// The new incarnation's subscribers receive new messages, and its
	// publishes reach the observer.
	sub := dialRecorder(t, second)
	require.NoError(t, sub.Subscribe(callContext(t), "news"))
	watcherSub := dialRecorder(t, observer)
	require.NoError(t, watcherSub.Subscribe(callContext(t), "news"))
	pubs := map[string]*recorder{"pub-obs": dialRecorder(t, observer), "pub-phoenix": dialRecorder(t, second)}
	publishAll(t, "news", pubs, 0, 20, 0)
	waitDelivery(t, sub, "phoenix", "news", seriesLengths(pubs, 20))
	waitDelivery(t, watcherSub, "obs", "news", seriesLengths(pubs, 20))
	assert.Equal(t, []string{"watcher"}, rosterOf(t, watcher.Client, channel))
}

// lobbyClient is a client that joined the presence test channel, with the
// roster its join returned.
type lobbyClient struct {
	*recorder
	joined []client.Member
}

func joinLobby(t *testing.T, n httpNode, channel, member string) *lobbyClient {
	t.Helper()
	r := dialRecorder(t, n)
	roster, err := r.Join(callContext(t), channel, member, map[string]string{"member": member})
	require.NoError(t, err)
	return &lobbyClient{recorder: r, joined: roster}
}

// checkEventConsistency checks that each watcher's join roster plus the
// events it received add up to the current roster.
func checkEventConsistency(t *testing.T, watchers map[string]*lobbyClient, channel string) {
	t.Helper()
	for name, w := range watchers {
		current := rosterOf(t, w.Client, channel)
		require.Eventually(t, func() bool {
			return equalStrings(replayRoster(w.joined, w.presenceEvents(channel)), current)
		}, waitTimeout, pollInterval, "watcher %s: join roster plus events never matched presence.members %v", name, current)
	}
}

func TestMeshPartitionHealLosesNothing(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2", "n3"}, nil)
	const channel, lobby = "events", "lobby"
	const phase = 50

	subs := subscribeOnEach(t, c.nodes, channel)
	pubs := publisherOnEach(t, c.nodes)
	watchers := map[string]*lobbyClient{}
	for _, id := range c.ids {
		watchers[id] = joinLobby(t, c.nodes[id], lobby, "watcher-"+id)
	}
	leaver1 := joinLobby(t, c.nodes["n1"], lobby, "leaver-n1")
	leaver2 := joinLobby(t, c.nodes["n2"], lobby, "leaver-n2")
	watcherRecorders := map[string]*recorder{}
	for id, w := range watchers {
		watcherRecorders[id] = w.recorder
	}
	before := []string{"leaver-n1", "leaver-n2", "watcher-n1", "watcher-n2", "watcher-n3"}
	waitRosters(t, watcherRecorders, lobby, before, waitTimeout)
	publishAll(t, channel, pubs, 0, phase, 5)

	// Isolate n1 until the others declare it down, so the heal has to
	// replay publishes and resync presence, not just resume a link.
	c.partition([]string{"n1"}, (*faultproxy.Proxy).Cut)
	cut := time.Now()
	publishAll(t, channel, pubs, phase, phase, 5)
	require.NoError(t, leaver1.Leave(callContext(t), lobby))
	require.NoError(t, leaver2.Leave(callContext(t), lobby))
	joinLobby(t, c.nodes["n1"], lobby, "joiner-n1")
	joinLobby(t, c.nodes["n2"], lobby, "joiner-n2")
	waitConnected(t, c.nodes["n2"], "n3")
	waitConnected(t, c.nodes["n1"])
	t.Logf("partition of n1 detected on both sides after %s", time.Since(cut).Round(time.Millisecond))

	c.healAll()
	after := []string{"joiner-n1", "joiner-n2", "watcher-n1", "watcher-n2", "watcher-n3"}
	converged := waitRosters(t, watcherRecorders, lobby, after, waitTimeout)
	t.Logf("rosters converged %s after the heal (peer timeout %s)", converged.Round(time.Millisecond), testPeerTimeout)
	assert.LessOrEqual(t, converged, 2*testPeerTimeout, "rosters must converge within 2 x peer timeout of the heal")

	publishAll(t, channel, pubs, 2*phase, phase, 5)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, 3*phase))
	}
	checkEventConsistency(t, watchers, lobby)
}

func TestMeshBlackholePurgesAndRecovers(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2"}, nil)
	const channel, lobby = "events", "lobby"
	const phase = 30

	subs := subscribeOnEach(t, c.nodes, channel)
	pubs := publisherOnEach(t, c.nodes)
	watchers := map[string]*lobbyClient{}
	watcherRecorders := map[string]*recorder{}
	for _, id := range c.ids {
		watchers[id] = joinLobby(t, c.nodes[id], lobby, "member-"+id)
		watcherRecorders[id] = watchers[id].recorder
	}
	both := []string{"member-n1", "member-n2"}
	waitRosters(t, watcherRecorders, lobby, both, waitTimeout)
	publishAll(t, channel, pubs, 0, phase, 3)

	// A silent partition: TCP detects nothing, so only the missing
	// heartbeats reveal it. The last heartbeat heard may be up to one
	// interval old when it starts, so the purge may come that much before
	// the peer timeout.
	c.proxy("n1", "n2").Blackhole()
	silenced := time.Now()
	for _, id := range c.ids {
		waitRosters(t, map[string]*recorder{id: watcherRecorders[id]}, lobby, []string{"member-" + id}, waitTimeout)
	}
	purge := time.Since(silenced)
	t.Logf("blackhole: both sides purged the other's member after %s (peer timeout %s)", purge.Round(time.Millisecond), testPeerTimeout)
	assert.GreaterOrEqual(t, purge, testPeerTimeout-testHeartbeat, "a member was purged before the peer timeout")

	// These publishes go out on links that are about to be closed as
	// dead, and the next ones while no link exists: only a replay after
	// the heal can deliver either.
	publishAll(t, channel, pubs, phase, phase, 3)
	for _, id := range c.ids {
		waitUnlinked(t, c.nodes[id])
	}
	t.Logf("blackhole: both sides closed the silent link after %s", time.Since(silenced).Round(time.Millisecond))
	publishAll(t, channel, pubs, 2*phase, phase, 3)

	c.proxy("n1", "n2").Heal()
	back := waitRosters(t, watcherRecorders, lobby, both, waitTimeout)
	t.Logf("blackhole healed: members back on both sides after %s", back.Round(time.Millisecond))
	assert.LessOrEqual(t, back, 2*testPeerTimeout, "rosters must converge within 2 x peer timeout of the heal")

	publishAll(t, channel, pubs, 3*phase, phase, 3)
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, seriesLengths(pubs, 4*phase))
	}
	for _, id := range c.ids {
		assert.Positive(t, metricValue(t, c.nodes[id], "wscluster_messages_replayed_total"), "%s replayed nothing", id)
	}
	checkEventConsistency(t, watchers, lobby)
}

func TestMeshRejectsWrongSecret(t *testing.T) {
	t.Parallel()
	goodCfg := nodeConfig("good", freePort(t))
	good := startNode(t, goodCfg)
	badCfg := nodeConfig("impostor", freePort(t))
	badCfg.ClusterSecret = "another secret"
	badCfg.Peers = []string{goodCfg.ClusterAdvertise}
	bad := startNode(t, badCfg)

	// Wait for repeated rejections rather than for a time: each redial
	// fails the proof again.
	const rejects = `wscluster_peer_link_rejects_total{reason="auth"}`
	require.Eventually(t, func() bool {
		return metricValue(t, good, rejects) >= 3
	}, waitTimeout, pollInterval, "the node with the right secret never rejected the impostor")

	for _, n := range []*testNode{good, bad} {
		_, s := fetchStatus(t, n, "/cluster")
		assert.Zero(t, s.ConnectedPeers, "%s: connected peers", n.id)
		assert.Empty(t, connectedPeers(t, n), "%s: /cluster lists a connected peer", n.id)
	}
	code, s := fetchStatus(t, bad, "/readyz")
	assert.Equal(t, 503, code, "a node whose only peer never linked is not ready")
	assert.False(t, s.Ready)

	// Messages cross in neither direction. Absence can only be shown by
	// waiting, so both publishes get a generous window.
	subs := subscribeOnEach(t, map[string]*testNode{"good": good, "impostor": bad}, "news")
	for _, n := range []*testNode{good, bad} {
		pub := dialRecorder(t, n)
		require.NoError(t, publishSeries(callContext(t), pub.Client, "news", "pub-"+n.id, 0, 1, 0))
	}
	for id, sub := range subs {
		waitDelivery(t, sub, id, "news", map[string]int{"pub-" + id: 1})
	}
	assert.Never(t, func() bool {
		return len(subs["good"].messages("news")) > 1 || len(subs["impostor"].messages("news")) > 1
	}, 5*testPeerTimeout, pollInterval, "a message crossed between nodes with different secrets")
}

func TestMeshPeerLearnedThroughExchange(t *testing.T) {
	t.Parallel()
	withExchange := func(id string, peers ...string) config.Node {
		cfg := nodeConfig(id, freePort(t))
		cfg.PeerExchange = true
		cfg.Peers = peers
		return cfg
	}
	cfg1 := withExchange("n1")
	nodes := map[string]*testNode{"n1": startNode(t, cfg1)}
	nodes["n2"] = startNode(t, withExchange("n2", cfg1.ClusterAdvertise))
	waitConnected(t, nodes["n1"], "n2")

	// n3 is configured with n1 only. Peer exchange tells n2 about n3, or
	// n3 about n2, and one of them dials the other.
	nodes["n3"] = startNode(t, withExchange("n3", cfg1.ClusterAdvertise))
	waitConnected(t, nodes["n1"], "n2", "n3")
	waitConnected(t, nodes["n2"], "n1", "n3")
	waitConnected(t, nodes["n3"], "n1", "n2")

	subs := subscribeOnEach(t, nodes, "news")
	pubs := publisherOnEach(t, nodes)
	publishAll(t, "news", pubs, 0, 30, 4)
	for id, sub := range subs {
		waitDelivery(t, sub, id, "news", seriesLengths(pubs, 30))
	}
}

// rawPublishFrame returns a publish request of exactly size bytes whose
// data is a JSON object padded with a string, and that data.
func rawPublishFrame(t *testing.T, id, channel string, size int) (frame, data []byte) {
	t.Helper()
	build := func(pad int) ([]byte, []byte) {
		// Escapes and multi-byte characters must cross unchanged too.
		data := fmt.Sprintf(`{"note":"caf\u00e9 \"quoted\" \\ \u2603","pad":"%s"}`, strings.Repeat("x", pad))
		frame := fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"publish","params":{"channel":%q,"data":%s,"qos":1}}`, id, channel, data)
		return []byte(frame), []byte(data)
	}
	empty, _ := build(0)
	require.Less(t, len(empty), size)
	frame, data = build(size - len(empty))
	require.Len(t, frame, size)
	require.True(t, json.Valid(frame))
	return frame, data
}

func TestMeshCarriesMessageNearLimit(t *testing.T) {
	t.Parallel()
	const limit = 65536
	c := startProxiedCluster(t, []string{"n1", "n2"}, func(cfg *config.Node) { cfg.MaxMessageBytes = limit })
	sub := dialRecorder(t, c.nodes["n2"])
	require.NoError(t, sub.Subscribe(callContext(t), "big"))

	requireNearLimitCrosses(t, c.nodes["n1"], sub, limit, "the cluster")
}

// requireNearLimitCrosses publishes on node from a raw frame one byte under
// limit and requires sub to receive it intact, once, at QoS 1. via names
// the path in failure messages.
func requireNearLimitCrosses(t *testing.T, from httpNode, sub *recorder, limit int, via string) {
	t.Helper()

	// The frame is written raw, so its size is exact. The reply has an id
	// the client did not issue, so it arrives through OnUnmatchedResponse.
	replies := make(chan []byte, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pub, err := client.Dial(ctx, wsURL(from), client.Options{OnUnmatchedResponse: func(r []byte) {
		replies <- append([]byte(nil), r...)
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })

	frame, data := rawPublishFrame(t, "big-1", "big", limit-1)
	require.NoError(t, pub.WriteRaw(1, frame))
	var reply struct {
		Result struct {
			MsgID string `json:"msg_id"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	select {
	case raw := <-replies:
		require.NoError(t, json.Unmarshal(raw, &reply))
	case <-time.After(waitTimeout):
		t.Fatal("no reply to the publish of a frame just under the limit")
	}
	require.Empty(t, reply.Error, "the publish of a frame just under the limit was rejected")
	require.NotEmpty(t, reply.Result.MsgID)

	require.Eventually(t, func() bool { return len(sub.messages("big")) > 0 }, waitTimeout, pollInterval,
		"the message just under the limit never crossed %s", via)
	got := sub.messages("big")
	require.Len(t, got, 1)
	assert.Equal(t, reply.Result.MsgID, got[0].MsgID)
	assert.Equal(t, string(data), string(got[0].Data), "the data changed on its way through %s", via)
	assert.Equal(t, 1, got[0].QoS)
}

func TestReadyzFollowsPeerLiveness(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2"}, nil)
	for _, id := range c.ids {
		code, s := fetchStatus(t, c.nodes[id], "/readyz")
		require.Equal(t, 200, code, "%s not ready with its peer linked", id)
		require.True(t, s.Ready)
	}

	// A cut link alone does not make the peer down, but the peer timeout
	// does. It counts from the last heartbeat heard, which may be up to
	// one interval before the cut.
	c.proxy("n1", "n2").Cut()
	cut := time.Now()
	for _, id := range c.ids {
		require.Eventually(t, func() bool {
			code, s := fetchStatus(t, c.nodes[id], "/readyz")
			return code == 503 && !s.Ready
		}, waitTimeout, pollInterval, "%s stayed ready with its only peer unreachable", id)
		notReady := time.Since(cut)
		t.Logf("%s: /readyz 503 after %s without its peer (peer timeout %s)", id, notReady.Round(time.Millisecond), testPeerTimeout)
		assert.GreaterOrEqual(t, notReady, testPeerTimeout-testHeartbeat, "%s not ready before the peer timeout", id)
	}

	c.proxy("n1", "n2").Heal()
	healed := time.Now()
	for _, id := range c.ids {
		require.Eventually(t, func() bool {
			code, _ := fetchStatus(t, c.nodes[id], "/readyz")
			return code == 200
		}, waitTimeout, pollInterval, "%s did not become ready after its peer returned", id)
		t.Logf("%s: /readyz 200 again %s after the heal", id, time.Since(healed).Round(time.Millisecond))
	}
}

func TestReadyzAloneWithoutPeers(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig("solo", freePort(t)))
	code, s := fetchStatus(t, n, "/readyz")
	assert.Equal(t, 200, code, "a mesh node with no peers configured is a cluster of one")
	assert.True(t, s.Ready)
	assert.Equal(t, "mesh", s.Engine)
	assert.NotNil(t, s.Peers, "peers must be an array, not null")
	assert.Empty(t, s.Peers)
}

func TestPresenceSyncMergesLargeRosters(t *testing.T) {
	t.Parallel()
	const channel = "crowd"
	const members = 10000
	const infoSize = 1024

	portA, portB := freePort(t), freePort(t)
	a := newLayerNode(t, "a", portA, []string{loopbackAddr(portB)})
	b := newLayerNode(t, "b", portB, []string{loopbackAddr(portA)})

	// Each node holds its members before the two ever link, so the whole
	// roster has to cross in the first full sync.
	joins := map[string][]backplane.PresenceDelta{
		"a": presenceJoins("a", channel, members, infoSize),
		"b": presenceJoins("b", channel, members, infoSize),
	}
	for _, n := range []*layerNode{a, b} {
		for _, d := range joins[n.id] {
			n.cluster.PresenceChanged(d)
		}
	}
	require.NoError(t, a.cluster.Start())
	started := time.Now()
	require.NoError(t, b.cluster.Start())

	for _, pair := range [][2]*layerNode{{a, b}, {b, a}} {
		receiver, sender := pair[0], pair[1]
		require.Eventually(t, func() bool {
			entries, _ := receiver.handler.syncedEntries(sender.id)
			return len(entries) == members
		}, waitTimeout, pollInterval, "%s never received all %d entries of %s", receiver.id, members, sender.id)
		entries, at := receiver.handler.syncedEntries(sender.id)
		t.Logf("%s received %d entries with %d-byte info from %s %s after the second node started (%d full syncs)",
			receiver.id, members, infoSize, sender.id, at.Sub(started).Round(time.Millisecond), receiver.handler.syncCount(sender.id))

		want := make(map[string]backplane.PresenceEntry, members)
		for _, d := range joins[sender.id] {
			want[d.Entry.Conn] = d.Entry
		}
		for _, e := range entries {
			w, ok := want[e.Conn]
			if !assert.True(t, ok, "%s: unexpected entry %s", receiver.id, e.Conn) {
				continue
			}
			delete(want, e.Conn)
			assert.Equal(t, w.Channel, e.Channel)
			assert.Equal(t, w.Member, e.Member)
			assert.Equal(t, w.Node, e.Node)
			assert.Equal(t, string(w.Info), string(e.Info), "%s: info of %s changed", receiver.id, e.Member)
		}
		assert.Empty(t, want, "%s: entries of %s missing", receiver.id, sender.id)
	}
}
