package workloads

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

func TestPubSubDeliversToEverySubscriber(t *testing.T) {
	nodes := startMesh(t, 2)
	rec := history.NewRecorder(nil)
	w, err := New("pubsub", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 7, PublishRate: 20})
	require.NoError(t, err)

	runPhases(t, w, 3*time.Second, time.Second)
	ops := rec.Ops()
	requireWellFormed(t, ops)

	// Processes 0-1 and 4-5 publish, 2-3 and 6-7 subscribe (node order).
	subscribers := map[int]bool{2: true, 3: true, 6: true, 7: true}
	subscribes := selectOps(ops, is(history.Ok, history.FSubscribe))
	require.Len(t, subscribes, len(subscribers)*DefaultChannels)
	for _, op := range subscribes {
		assert.True(t, subscribers[op.Process], "subscribe ok of process %d", op.Process)
		assert.Equal(t, 1, op.Epoch)
	}

	publishes := selectOps(ops, is(history.Ok, history.FPublish))
	require.Greater(t, len(publishes), 100, "4 publishers at 20/s for 3 s")
	assert.Empty(t, selectOps(ops, is(history.Fail, history.FPublish)))
	assert.Empty(t, selectOps(ops, is(history.Info, history.FPublish)))
	assert.Equal(t, int64(len(selectOps(ops, func(op history.Op) bool {
		return op.Type == history.Ok || op.Type == history.Fail || op.Type == history.Info
	}))), w.Completed())

	// Every first delivery, by message id and receiving process.
	received := map[string]map[int]int{}
	receivedData := map[string]string{}
	for _, op := range selectOps(ops, is(history.Event, history.FMessage)) {
		if op.Redelivered {
			continue
		}
		if received[op.MsgID] == nil {
			received[op.MsgID] = map[int]int{}
		}
		received[op.MsgID][op.Process]++
		receivedData[op.MsgID] = string(op.Value)
	}

	qos := map[int]int{}
	for _, op := range publishes {
		require.NotEmpty(t, op.MsgID, "publish ok at index %d", op.Index)
		qos[op.QoS]++
		assert.Len(t, op.Value, DefaultPayloadBytes, "payload of publish at index %d", op.Index)
		assert.JSONEq(t, string(op.Value), receivedData[op.MsgID], "data of %s as received", op.MsgID)
		for process := range subscribers {
			assert.Equal(t, 1, received[op.MsgID][process], "deliveries of %s to process %d", op.MsgID, process)
		}
	}
	assert.Positive(t, qos[0], "QoS 0 publishes")
	assert.Positive(t, qos[1], "QoS 1 publishes")
}

func TestPubSubSequencePerChannel(t *testing.T) {
	nodes := startMesh(t, 1)
	rec := history.NewRecorder(nil)
	w, err := New("pubsub", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 3, PublishersPerNode: 1, SubscribersPerNode: 1, PayloadBytes: 10})
	require.NoError(t, err)

	runPhases(t, w, time.Second, 100*time.Millisecond)
	ops := rec.Ops()
	requireWellFormed(t, ops)

	invokes := selectOps(ops, is(history.Invoke, history.FPublish))
	require.Greater(t, len(invokes), 10)
	last := map[string]int64{}
	for _, op := range invokes {
		p, err := history.ParsePayload(op.Value)
		require.NoError(t, err, "payload at index %d", op.Index)
		assert.Equal(t, op.Process, p.Process)
		assert.Equal(t, op.Epoch, p.Epoch)
		assert.Equal(t, last[op.Channel]+1, p.Seq, "seq on %s at index %d", op.Channel, op.Index)
		assert.Empty(t, p.Pad, "a payload already larger than PayloadBytes gets no pad")
		last[op.Channel] = p.Seq
	}
	assert.Greater(t, len(last), 1, "publishes spread over channels")
}

// With a publish window above 1, a publisher has several publishes in
// flight, each completion repeats its invoke's channel and data, and every
// subscriber still receives each channel's sequence in order.
func TestPubSubPipelinedPublishes(t *testing.T) {
	nodes := startMesh(t, 1)
	rec := history.NewRecorder(nil)
	w, err := New("pubsub", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 5, PublishersPerNode: 1,
		SubscribersPerNode: 1, PublishRate: 2000, PublishWindow: 8})
	require.NoError(t, err)
	runPhases(t, w, time.Second, 500*time.Millisecond)
	ops := rec.Ops()

	// Process 0 publishes and process 1 subscribes.
	type key struct{ channel, data string }
	open := map[key]bool{}
	maxOpen := 0
	for _, op := range selectOps(ops, func(op history.Op) bool { return op.F == history.FPublish }) {
		k := key{op.Channel, string(op.Value)}
		if op.Type == history.Invoke {
			require.False(t, open[k], "publish of %s on %s invoked twice", op.Value, op.Channel)
			open[k] = true
			maxOpen = max(maxOpen, len(open))
			continue
		}
		require.True(t, open[k], "completion at index %d repeats no open invoke's channel and data", op.Index)
		assert.Equal(t, history.Ok, op.Type, "publish completion at index %d", op.Index)
		delete(open, k)
	}
	assert.Empty(t, open, "publishes without a completion")
	assert.Greater(t, maxOpen, 1, "no two publishes were ever in flight at once")

	last := map[string]int64{}
	for _, op := range selectOps(ops, is(history.Event, history.FMessage)) {
		if op.Redelivered {
			continue
		}
		var p history.Payload
		require.NoError(t, json.Unmarshal(op.Value, &p))
		assert.Greater(t, p.Seq, last[op.Channel], "message at index %d out of order on %s", op.Index, op.Channel)
		last[op.Channel] = p.Seq
	}
	assert.NotEmpty(t, last, "the subscriber received nothing")
}
