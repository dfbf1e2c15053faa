package cluster_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/mesh"
	"github.com/wscluster/wscluster/metrics"
)

// recordingHandler replaces the pub/sub and presence protocols of a node in
// tests and records every call the cluster layer makes to them.
type recordingHandler struct {
	mu sync.Mutex
	// synced is the latest full set of entries per node from SyncNode.
	synced map[string][]backplane.PresenceEntry
	// syncedAt is when the latest SyncNode per node arrived.
	syncedAt map[string]time.Time
	// syncs counts SyncNode calls per node.
	syncs    map[string]int
	deltas   map[string][]backplane.PresenceDelta
	messages []backplane.Message
}

func newRecordingHandler() *recordingHandler {
	return &recordingHandler{
		synced:   make(map[string][]backplane.PresenceEntry),
		syncedAt: make(map[string]time.Time),
		syncs:    make(map[string]int),
		deltas:   make(map[string][]backplane.PresenceDelta),
	}
}

func (h *recordingHandler) Deliver(msg backplane.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.messages = append(h.messages, msg)
}

func (h *recordingHandler) ApplyRemote(node string, deltas []backplane.PresenceDelta) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deltas[node] = append(h.deltas[node], deltas...)
}

func (h *recordingHandler) SyncNode(node string, entries []backplane.PresenceEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.synced[node] = append([]backplane.PresenceEntry(nil), entries...)
	h.syncedAt[node] = time.Now()
	h.syncs[node]++
}

// LocalEntries returns nothing: the cluster core keeps its own copy of the
// local entries from PresenceChanged.
func (h *recordingHandler) LocalEntries() []backplane.PresenceEntry { return nil }

// syncedEntries returns the latest full set of node's entries and when it
// arrived.
func (h *recordingHandler) syncedEntries(node string) ([]backplane.PresenceEntry, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.synced[node], h.syncedAt[node]
}

func (h *recordingHandler) syncCount(node string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.syncs[node]
}

// layerNode is a cluster layer over a mesh transport, without a server.
type layerNode struct {
	id      string
	addr    string
	cluster *cluster.Cluster
	handler *recordingHandler
}

// newLayerNode builds, but does not start, a cluster layer listening on
// port and dialing peers. It closes at the end of the test.
func newLayerNode(t *testing.T, id string, port int, peers []string) *layerNode {
	t.Helper()
	ids := backplane.NewIDs(id)
	m := metrics.New()
	log := testLogger(t).With("node", id)
	transport, _, err := cluster.NewMeshTransport(mesh.Config{
		NodeID:            id,
		Incarnation:       ids.Incarnation(),
		ListenAddr:        loopbackAddr(port),
		AdvertiseAddr:     loopbackAddr(port),
		Peers:             peers,
		Secret:            testSecret,
		HeartbeatInterval: testHeartbeat,
		PeerTimeout:       testPeerTimeout,
		Logger:            log,
		Metrics:           m,
	})
	require.NoError(t, err)
	c, err := cluster.New(cluster.Config{
		IDs: ids, NodeID: id, Transport: transport, Metrics: m, Logger: log,
		HeartbeatInterval: testHeartbeat, PeerTimeout: testPeerTimeout,
	})
	require.NoError(t, err)
	h := newRecordingHandler()
	c.Attach(h)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return &layerNode{id: id, addr: loopbackAddr(port), cluster: c, handler: h}
}

// memberInfo returns the info of member number i: a JSON object of exactly
// size bytes whose content depends on i, so that a swapped or truncated
// info is detected.
func memberInfo(node string, i, size int) []byte {
	head := fmt.Sprintf(`{"node":%q,"i":%d,"pad":"`, node, i)
	tail := `"}`
	rng := rand.New(rand.NewPCG(uint64(i), uint64(len(node))))
	var pad strings.Builder
	for pad.Len() < size-len(head)-len(tail) {
		pad.WriteByte(byte('a' + rng.IntN(26)))
	}
	return []byte(head + pad.String() + tail)
}

// presenceJoins returns count join deltas of node on channel.
func presenceJoins(node, channel string, count, infoSize int) []backplane.PresenceDelta {
	deltas := make([]backplane.PresenceDelta, count)
	for i := range deltas {
		deltas[i] = backplane.PresenceDelta{Op: backplane.PresenceJoin, Entry: backplane.PresenceEntry{
			Channel: channel,
			Member:  fmt.Sprintf("%s-member-%05d", node, i),
			Node:    node,
			Conn:    fmt.Sprintf("%s:conn-%05d", node, i),
			Info:    memberInfo(node, i, infoSize),
		}}
	}
	return deltas
}
