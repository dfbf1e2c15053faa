package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/internal/faultproxy"
	"github.com/wscluster/wscluster/internal/freeport"
	"github.com/wscluster/wscluster/server"
)

// Timings of the test clusters: short, so that faults are detected quickly.
const (
	testHeartbeat   = 100 * time.Millisecond
	testPeerTimeout = 300 * time.Millisecond
)

// waitTimeout bounds every wait for an event that must happen: a link, a
// message, a roster change or a process exit.
const waitTimeout = 15 * time.Second

// pollInterval is the pause between two checks of a condition.
const pollInterval = 10 * time.Millisecond

// testSecret is the cluster secret of every test node unless a test sets
// another.
const testSecret = "e2e test secret"

// testLogWriter sends log lines to t.Log until the test ends, so that a
// goroutine that logs late cannot make the test panic.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// testLogger returns a logger whose lines appear in the test's output when
// the test fails or runs with -v.
func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. A
// cluster listener needs a port known before it starts, because peers and
// proxies are configured with it.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	require.NoError(t, err)
	return port
}

func loopbackAddr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// nodeConfig returns the configuration of a mesh node with the test
// timings, its cluster listener on the given port and no peers.
func nodeConfig(id string, clusterPort int) config.Node {
	cfg := config.Default()
	cfg.NodeID = id
	cfg.Engine = "mesh"
	cfg.Listen = "127.0.0.1:0"
	cfg.ClusterListen = loopbackAddr(clusterPort)
	cfg.ClusterAdvertise = loopbackAddr(clusterPort)
	cfg.Peers = nil
	cfg.PeerExchange = false
	cfg.ClusterSecret = testSecret
	cfg.HeartbeatInterval = testHeartbeat
	cfg.PeerTimeout = testPeerTimeout
	return cfg
}

// testNode is an in-process node serving on a loopback listener.
type testNode struct {
	id     string
	cfg    config.Node
	node   *server.Node
	addr   string // HTTP host:port
	cancel context.CancelFunc
	served chan error
	once   sync.Once
}

// startNode starts a node with cfg. It stops at the end of the test.
func startNode(t *testing.T, cfg config.Node) *testNode {
	t.Helper()
	node, err := server.New(cfg, testLogger(t))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{id: cfg.NodeID, cfg: cfg, node: node, addr: ln.Addr().String(), cancel: cancel, served: make(chan error, 1)}
	go func() { n.served <- node.Serve(ctx, ln) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop shuts the node down gracefully, as SIGTERM does, and waits for it.
// It is safe to call twice.
func (n *testNode) stop(t testing.TB) {
	t.Helper()
	n.once.Do(func() {
		n.cancel()
		select {
		case err := <-n.served:
			assert.NoError(t, err, "node %s stopped with an error", n.id)
		case <-time.After(waitTimeout):
			t.Errorf("node %s did not stop within %s", n.id, waitTimeout)
		}
	})
}

func (n *testNode) httpAddr() string { return n.addr }

// httpNode is a node of either kind, reached through its HTTP address.
type httpNode interface {
	httpAddr() string
}

func wsURL(n httpNode) string { return "ws://" + n.httpAddr() + "/ws" }

// fetchStatus gets path, /cluster or /readyz, and decodes the status body.
func fetchStatus(t testing.TB, n httpNode, path string) (int, server.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr()+path, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()

	var s server.Status
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s), "%s of %s is not status JSON", path, n.httpAddr())
	return resp.StatusCode, s
}

// connectedPeers returns the ids of the peers that /cluster lists as
// connected, sorted.
func connectedPeers(t testing.TB, n httpNode) []string {
	t.Helper()
	_, s := fetchStatus(t, n, "/cluster")
	var ids []string
	for _, p := range s.Peers {
		if p.Connected && p.Linked {
			ids = append(ids, p.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// waitUnlinked waits until /cluster of n lists no open link to any peer.
func waitUnlinked(t testing.TB, n httpNode) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, s := fetchStatus(t, n, "/cluster")
		for _, p := range s.Peers {
			if p.Linked {
				return false
			}
		}
		return true
	}, waitTimeout, pollInterval, "node at %s kept a link open", n.httpAddr())
}

// waitConnected waits until /cluster of n reports exactly the want peers
// alive and linked.
func waitConnected(t testing.TB, n httpNode, want ...string) {
	t.Helper()
	sort.Strings(want)
	require.Eventually(t, func() bool {
		_, s := fetchStatus(t, n, "/cluster")
		return s.ConnectedPeers == len(want) && equalStrings(connectedPeers(t, n), want)
	}, waitTimeout, pollInterval, "node at %s never had exactly the peers %v connected", n.httpAddr(), want)
}

// metricValue scrapes /metrics of n and returns the value of the sample
// whose line starts with series, such as
// `wscluster_peer_link_rejects_total{reason="auth"}`, or 0 when absent.
func metricValue(t testing.TB, n httpNode, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.httpAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			require.NoError(t, err, "metric line %q", line)
			return v
		}
	}
	return 0
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// proxiedCluster is a full mesh of in-process nodes in which every link
// passes through its own fault proxy. For each pair, only the node with
// the smaller id dials, through the pair's proxy, and peer exchange is off,
// so no link can bypass a proxy.
type proxiedCluster struct {
	nodes   map[string]*testNode
	ids     []string
	proxies map[[2]string]*faultproxy.Proxy // by {smaller id, larger id}
}

// startProxiedCluster starts one node per id, with mutate applied to each
// configuration, and waits until every node is linked to every other.
func startProxiedCluster(t *testing.T, ids []string, mutate func(*config.Node)) *proxiedCluster {
	t.Helper()
	ids = append([]string(nil), ids...)
	sort.Strings(ids)
	c := &proxiedCluster{nodes: make(map[string]*testNode), ids: ids, proxies: make(map[[2]string]*faultproxy.Proxy)}

	ports := make(map[string]int)
	for _, id := range ids {
		ports[id] = freePort(t)
	}
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			p, err := faultproxy.New("127.0.0.1:0", loopbackAddr(ports[b]))
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, p.Close()) })
			c.proxies[[2]string{a, b}] = p
		}
	}

	for i, id := range ids {
		cfg := nodeConfig(id, ports[id])
		for _, b := range ids[i+1:] {
			cfg.Peers = append(cfg.Peers, c.proxies[[2]string{id, b}].Addr())
		}
		if mutate != nil {
			mutate(&cfg)
		}
		c.nodes[id] = startNode(t, cfg)
	}
	c.waitFullMesh(t)
	return c
}

// waitFullMesh waits until every node reports every other node connected.
func (c *proxiedCluster) waitFullMesh(t testing.TB) {
	t.Helper()
	for _, id := range c.ids {
		var others []string
		for _, other := range c.ids {
			if other != id {
				others = append(others, other)
			}
		}
		waitConnected(t, c.nodes[id], others...)
	}
}

// proxy returns the proxy of the link between nodes a and b.
func (c *proxiedCluster) proxy(a, b string) *faultproxy.Proxy {
	if b < a {
		a, b = b, a
	}
	return c.proxies[[2]string{a, b}]
}

// partition applies fault to every link between a node of side and a node
// outside it.
func (c *proxiedCluster) partition(side []string, fault func(*faultproxy.Proxy)) {
	inSide := make(map[string]bool)
	for _, id := range side {
		inSide[id] = true
	}
	for pair, p := range c.proxies {
		if inSide[pair[0]] != inSide[pair[1]] {
			fault(p)
		}
	}
}

// healAll heals every proxy of the cluster.
func (c *proxiedCluster) healAll() {
	for _, p := range c.proxies {
		p.Heal()
	}
}
