package workloads

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

// choice is what determinism compares: the operation a process chose.
type choice struct {
	f       string
	channel string
	qos     int
}

// runChoices runs the mixed workload with seed for runFor and returns every
// process's invokes as choices.
func runChoices(t *testing.T, nodes []*testNode, seed int64, runFor time.Duration) (map[int][]choice, []history.Op) {
	t.Helper()
	rec := history.NewRecorder(nil)
	w, err := New("mixed", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: seed, PublishRate: 10, PingInterval: testPingInterval})
	require.NoError(t, err)
	runPhases(t, w, runFor, 0)

	choices := map[int][]choice{}
	for _, op := range selectOps(rec.Ops(), func(op history.Op) bool { return op.Type == history.Invoke }) {
		choices[op.Process] = append(choices[op.Process], choice{op.F, op.Channel, op.QoS})
	}
	return choices, rec.Ops()
}

func TestMixedSameSeedSameChoices(t *testing.T) {
	nodes := startMesh(t, 2)
	first, ops := runChoices(t, nodes, 42, 1500*time.Millisecond)
	second, _ := runChoices(t, nodes, 42, 1500*time.Millisecond)
	other, _ := runChoices(t, nodes, 43, 1500*time.Millisecond)
	requireWellFormed(t, ops)

	// Pub/sub takes processes 0-7 and presence 8-15, then the final
	// readers 16 and 17.
	for process := range 18 {
		require.NotEmpty(t, first[process], "process %d made no operation", process)
	}
	for _, op := range ops {
		switch op.F {
		case history.FPublish, history.FSubscribe:
			assert.Less(t, op.Process, 8, "%s at index %d", op.F, op.Index)
		case history.FJoin, history.FLeave:
			assert.True(t, op.Process >= 8 && op.Process < 16, "%s by process %d at index %d", op.F, op.Process, op.Index)
		}
	}

	differs := false
	for process := range 16 {
		n := min(len(first[process]), len(second[process]), 20)
		require.GreaterOrEqual(t, n, 5, "process %d made too few operations to compare", process)
		assert.Equal(t, first[process][:n], second[process][:n], "choices of process %d with the same seed", process)

		m := min(n, len(other[process]))
		if fmt.Sprint(first[process][:m]) != fmt.Sprint(other[process][:m]) {
			differs = true
		}
	}
	assert.True(t, differs, "another seed made the same choices in every process")
}

func TestKilledNodeClientsMoveOver(t *testing.T) {
	nodes := startMesh(t, 2)
	rec := history.NewRecorder(nil)
	w, err := New("mixed", Config{
		Nodes: topologyNodes(nodes), Recorder: rec, Seed: 5, PublishRate: 20, PingInterval: testPingInterval,
		PublishersPerNode: 1, SubscribersPerNode: 1, PresenceWorkersPerNode: 1,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Setup(ctx))

	// Stop n2 a second into the main phase, and let the clients move.
	runCtx, stopRun := context.WithTimeout(ctx, 4*time.Second)
	defer stopRun()
	ran := make(chan error, 1)
	go func() { ran <- w.Run(runCtx) }()
	time.Sleep(time.Second)
	killTime := rec.Now()
	nodes[1].stop()
	require.NoError(t, <-ran)
	require.NoError(t, w.Close())
	ops := rec.Ops()
	requireWellFormed(t, ops)

	// Processes 2 (publisher), 3 (subscriber) and 6 (observer) live on n2
	// until it stops. Churn workers may be anywhere.
	onN2 := connectionsAt(ops, killTime, "n2")
	for _, process := range []int{2, 3, 6} {
		assert.Contains(t, onN2, process, "process %d on n2 when it stopped", process)
	}
	for process, epoch := range onN2 {
		// A churn worker's own drop may win the race with the node's close.
		ends := selectOps(ops, func(op history.Op) bool {
			ended := is(history.Event, history.FDisconnect)(op) || is(history.Ok, history.FDrop)(op)
			return ended && op.Process == process && op.Epoch == epoch
		})
		require.Len(t, ends, 1, "end of process %d epoch %d", process, epoch)
		assert.Equal(t, "n2", ends[0].Node)
		if process == 2 || process == 3 || process == 6 {
			assert.Equal(t, history.FDisconnect, ends[0].F, "end of process %d epoch %d", process, epoch)
			assert.Contains(t, ends[0].Error, "1001", "close code of a node that shuts down")
		}

		moved := selectOps(ops, func(op history.Op) bool {
			return is(history.Ok, history.FConnect)(op) && op.Process == process && op.Epoch == epoch+1
		})
		require.Len(t, moved, 1, "connect of process %d epoch %d", process, epoch+1)
		assert.Equal(t, "n1", moved[0].Node)
	}

	// Nothing connects to the stopped node, and the subscriber, the
	// observer and the publisher carry on on n1.
	assert.Empty(t, selectOps(ops, func(op history.Op) bool {
		return is(history.Ok, history.FConnect)(op) && op.Node == "n2" && op.Time > killTime
	}))
	requireOkOn(t, ops, 3, history.FSubscribe, "n1", DefaultChannels)
	requireOkOn(t, ops, 6, history.FJoin, "n1", DefaultPresenceChannels)
	for _, op := range selectOps(ops, is(history.Ok, history.FPublish)) {
		if op.Process == 2 && op.Node == "n1" {
			p, err := history.ParsePayload(op.Value)
			require.NoError(t, err)
			assert.Equal(t, op.Epoch, p.Epoch, "payload epoch at index %d", op.Index)
		}
	}
	requireOkOn(t, ops, 2, history.FPublish, "n1", 5)
}

// connectionsAt returns the epoch of every process connected to node at
// time at.
func connectionsAt(ops []history.Op, at int64, node string) map[int]int {
	current := map[int]history.Op{}
	for _, op := range ops {
		if op.Time > at {
			break
		}
		switch {
		case is(history.Ok, history.FConnect)(op):
			current[op.Process] = op
		case is(history.Invoke, history.FDrop)(op), is(history.Event, history.FDisconnect)(op):
			delete(current, op.Process)
		}
	}
	on := map[int]int{}
	for process, op := range current {
		if op.Node == node {
			on[process] = op.Epoch
		}
	}
	return on
}

// requireOkOn checks that process completed at least n f operations on
// node.
func requireOkOn(t *testing.T, ops []history.Op, process int, f, node string, n int) {
	t.Helper()
	done := selectOps(ops, func(op history.Op) bool {
		return is(history.Ok, f)(op) && op.Process == process && op.Node == node
	})
	require.GreaterOrEqual(t, len(done), n, "%s ok entries of process %d on %s", f, process, node)
}

func TestCloseStopsRecording(t *testing.T) {
	nodes := startMesh(t, 1)
	rec := history.NewRecorder(nil)
	w, err := New("mixed", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 1, PingInterval: testPingInterval})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, w.Setup(ctx))

	// Close during Run ends Run, although Run's context never ends.
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, w.Close())
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}

	recorded := len(rec.Ops())
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, rec.Ops(), recorded, "entries recorded after Close returned")
	assert.NoError(t, w.Close(), "second Close")
	assert.Error(t, w.Setup(ctx), "Setup after Close")
	assert.Greater(t, w.Completed(), int64(0))
}
