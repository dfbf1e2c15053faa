package workloads

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/internal/freeport"
	"github.com/wscluster/wscluster/server"
	"github.com/wscluster/wscluster/topology"
)

// testPingInterval is the in-process nodes' --ping-interval, short so that
// a silent churn connection is closed, and its worker back, within a test.
// Every workload of these tests is told it.
const testPingInterval = 300 * time.Millisecond

// testNode is one in-process node of a mesh on loopback.
type testNode struct {
	node   *server.Node
	info   topology.Node
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop shuts the node down as SIGTERM would: its clients get close 1001.
// It is safe to call twice.
func (n *testNode) stop() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
	})
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := freeport.Get()
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// startMesh starts size mesh nodes n1..nN in this process, every node
// dialing every other, and waits until each one is connected to all its peers. The
// nodes stop when the test ends.
func startMesh(t *testing.T, size int) []*testNode {
	t.Helper()
	clusterAddrs := make([]string, size)
	for i := range clusterAddrs {
		clusterAddrs[i] = freeAddr(t)
	}

	nodes := make([]*testNode, size)
	for i := range nodes {
		var peers []string
		for j, addr := range clusterAddrs {
			if j != i {
				peers = append(peers, addr)
			}
		}
		nodes[i] = startTestNode(t, fmt.Sprintf("n%d", i+1), clusterAddrs[i], peers)
	}

	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.node.Status().ConnectedPeers < size-1 {
			require.True(t, time.Now().Before(deadline), "node %s did not connect to its peers", n.info.ID)
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// startTestNode starts one mesh node with its cluster listener on
// clusterAddr.
func startTestNode(t *testing.T, id, clusterAddr string, peers []string) *testNode {
	t.Helper()
	cfg := config.Default()
	cfg.NodeID = id
	cfg.Engine = "mesh"
	cfg.ClusterListen = clusterAddr
	cfg.ClusterAdvertise = clusterAddr
	cfg.Peers = peers
	cfg.ClusterSecret = "workloads-test-secret"
	cfg.PingInterval = testPingInterval
	node, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{
		node: node,
		info: topology.Node{
			ID:      id,
			WSURL:   "ws://" + ln.Addr().String() + "/ws",
			HTTPURL: "http://" + ln.Addr().String(),
		},
		cancel: cancel,
		done:   make(chan error, 1),
	}
	go func() { n.done <- node.Serve(ctx, ln) }()

	t.Cleanup(n.stop)
	return n
}

// topologyNodes returns the topology view of nodes.
func topologyNodes(nodes []*testNode) []topology.Node {
	out := make([]topology.Node, len(nodes))
	for i, n := range nodes {
		out[i] = n.info
	}
	return out
}

// runPhases runs a workload through Setup, Run for runFor, Observe for
// observeFor, Final and Close, failing the test on any error.
func runPhases(t *testing.T, w Workload, runFor, observeFor time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	require.NoError(t, w.Setup(ctx))
	runCtx, stopRun := context.WithTimeout(ctx, runFor)
	require.NoError(t, w.Run(runCtx))
	stopRun()
	observeCtx, stopObserve := context.WithTimeout(ctx, observeFor)
	require.NoError(t, w.Observe(observeCtx))
	stopObserve()
	require.NoError(t, w.Final(ctx))
	require.NoError(t, w.Close())
}

// selectOps returns the entries for which keep returns true.
func selectOps(ops []history.Op, keep func(op history.Op) bool) []history.Op {
	var out []history.Op
	for _, op := range ops {
		if keep(op) {
			out = append(out, op)
		}
	}
	return out
}

// is returns a filter for entries of type typ and name f.
func is(typ history.Type, f string) func(op history.Op) bool {
	return func(op history.Op) bool { return op.Type == typ && op.F == f }
}

// requireWellFormed checks the history conventions every workload must
// keep. Each invoke is followed by exactly one completion of the same
// process and name before the next invoke of that process. A process's
// operations run on its latest epoch until that epoch ends with FDisconnect
// or FDrop, after which only a connect of the next epoch may follow. Events
// belong to the latest epoch. NOTE: a publisher with PublishWindow above 1
// has several publishes open at once, which this check rejects, so
// TestPubSubPipelinedPublishes checks its history on its own.
func requireWellFormed(t *testing.T, ops []history.Op) {
	t.Helper()
	pending := map[int]history.Op{}
	epoch := map[int]int{}
	ended := map[int]bool{}
	for _, op := range ops {
		switch op.Type {
		case history.Invoke:
			prev, open := pending[op.Process]
			require.False(t, open, "process %d invoked %s at index %d while %s at index %d was open", op.Process, op.F, op.Index, prev.F, prev.Index)
			pending[op.Process] = op
			if op.F == history.FConnect {
				require.True(t, epoch[op.Process] == 0 || ended[op.Process], "connect at index %d while epoch %d is up", op.Index, epoch[op.Process])
				require.Equal(t, epoch[op.Process]+1, op.Epoch, "epoch of connect at index %d", op.Index)
			} else {
				require.False(t, ended[op.Process], "%s at index %d after the end of epoch %d", op.F, op.Index, op.Epoch)
				require.Equal(t, epoch[op.Process], op.Epoch, "epoch of %s at index %d", op.F, op.Index)
			}
		case history.Ok, history.Fail, history.Info:
			inv, open := pending[op.Process]
			require.True(t, open, "completion without invoke at index %d", op.Index)
			require.Equal(t, inv.F, op.F, "completion at index %d", op.Index)
			require.Equal(t, inv.Epoch, op.Epoch, "completion at index %d", op.Index)
			delete(pending, op.Process)
			switch {
			case op.F == history.FConnect && op.Type == history.Ok:
				epoch[op.Process], ended[op.Process] = op.Epoch, false
			case op.F == history.FDrop:
				ended[op.Process] = true
			}
		case history.Event:
			require.Equal(t, epoch[op.Process], op.Epoch, "event %s at index %d", op.F, op.Index)
			require.False(t, ended[op.Process], "event %s at index %d after the end of epoch %d", op.F, op.Index, op.Epoch)
			if op.F == history.FDisconnect {
				ended[op.Process] = true
			}
		}
	}
	require.Empty(t, pending, "invokes without completion")
}
