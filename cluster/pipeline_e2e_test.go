package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/internal/faultproxy"
	"github.com/wscluster/wscluster/internal/redistest"
)

// pipelinedPublishes is how many publishes one connection writes without
// waiting for a result: more than pubsub's default of 64 in flight, so the
// connection also waits for free slots.
const pipelinedPublishes = 500

// publishPipelined writes count publish requests on channel to node n in a
// row, without waiting for results, then waits for every result. It
// returns the sequence numbers of the publishes that failed. afterWrite, if
// set, runs after each request is written.
func publishPipelined(t *testing.T, n httpNode, channel, publisher string, count int, afterWrite func(seq int)) map[int]bool {
	t.Helper()
	replies := make(chan []byte, count)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pub, err := client.Dial(ctx, wsURL(n), client.Options{OnUnmatchedResponse: func(r []byte) {
		replies <- append([]byte(nil), r...)
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })

	for seq := range count {
		data, err := json.Marshal(testPayload{Publisher: publisher, Seq: seq})
		require.NoError(t, err)
		frame := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"publish","params":{"channel":%q,"data":%s,"qos":%d}}`,
			seq, channel, data, seq%2)
		require.NoError(t, pub.WriteRaw(1, []byte(frame)))
		if afterWrite != nil {
			afterWrite(seq)
		}
	}
	return collectResults(t, replies, count)
}

// collectResults reads count publish results and returns the ids, which are
// sequence numbers, of those that failed with 1005, the publishes that were
// not taken. A publish with 1007 was not confirmed and may be delivered.
func collectResults(t *testing.T, replies <-chan []byte, count int) map[int]bool {
	t.Helper()
	failed := map[int]bool{}
	answered := map[int]bool{}
	for range count {
		select {
		case raw := <-replies:
			var reply struct {
				ID    int `json:"id"`
				Error *struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(raw, &reply))
			require.False(t, answered[reply.ID], "publish %d answered twice", reply.ID)
			answered[reply.ID] = true
			if reply.Error == nil {
				continue
			}
			require.Contains(t, []int{client.CodeBackplaneUnavailable, client.CodePublishUnconfirmed}, reply.Error.Code, "error of publish %d", reply.ID)
			if reply.Error.Code == client.CodeBackplaneUnavailable {
				failed[reply.ID] = true
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%d of %d pipelined publishes got no result", count-len(answered), count)
		}
	}
	return failed
}

// waitSeries waits until r has received on channel every message of
// publisher's series of count that did not fail with 1005, then checks that
// they arrived once each and in order, and that no failed one arrived.
func waitSeries(t *testing.T, r *recorder, name, channel, publisher string, count int, failed map[int]bool) {
	t.Helper()
	var want []int
	for seq := range count {
		if !failed[seq] {
			want = append(want, seq)
		}
	}
	require.Eventually(t, func() bool {
		return len(summarize(r.messages(channel)).seqs[publisher]) >= len(want)
	}, waitTimeout, pollInterval, "subscriber %s: not every publish that was not rejected arrived", name)
	report := summarize(r.messages(channel))
	assert.Zero(t, report.duplicateIDs, "subscriber %s: msg_ids delivered twice", name)
	assert.Equal(t, want, report.seqs[publisher],
		"subscriber %s: the publishes not rejected must arrive once each, in order, and no rejected one", name)
}

// A connection that writes many publishes without waiting gets every
// result, and every node delivers them once each, in order.
func TestMeshPipelinedPublishesKeepOrder(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2", "n3"}, nil)
	const channel = "pipelined"
	subs := subscribeOnEach(t, c.nodes, channel)

	failed := publishPipelined(t, c.nodes["n1"], channel, "pipe", pipelinedPublishes, nil)
	require.Empty(t, failed, "a mesh rejected publishes")
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, map[string]int{"pipe": pipelinedPublishes})
	}
}

func TestRedisPipelinedPublishesKeepOrder(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "pipelined"
	subs := subscribeOnEach(t, nodes, channel)

	failed := publishPipelined(t, nodes["n1"], channel, "pipe", pipelinedPublishes, nil)
	assert.Empty(t, failed, "publishes rejected while Redis was up")
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, map[string]int{"pipe": pipelinedPublishes})
	}
}

// Publishes pipelined into a node cut off from its peers are all taken, and
// reach the other nodes in order once the link returns.
func TestMeshPipelinedPublishesCrossAPartition(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2", "n3"}, nil)
	const channel = "pipelined-cut"
	subs := subscribeOnEach(t, c.nodes, channel)

	c.partition([]string{"n1"}, (*faultproxy.Proxy).Cut)
	failed := publishPipelined(t, c.nodes["n1"], channel, "pipe", pipelinedPublishes, nil)
	require.Empty(t, failed, "a mesh rejected publishes while cut off")
	c.healAll()
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, map[string]int{"pipe": pipelinedPublishes})
	}
}

// Redis stops while a connection has publishes in flight. Every publish
// gets a result, no rejected one (1005) arrives anywhere, and the others,
// confirmed or not (1007), arrive everywhere, in order.
func TestRedisPipelinedPublishesAcrossPause(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startRedisCluster(t, srv, []string{"n1", "n2"}, nil)
	const channel = "pipelined-pause"
	subs := subscribeOnEach(t, nodes, channel)

	// The requests are written 5 ms apart, 2.5 s in all. Redis stops after
	// a fifth of them, so that publishes succeed before, fail during and
	// succeed after the pause. It continues two peer timeouts later: soon
	// after the first publishes failed, so that a node still holding its
	// old subscription would receive them.
	resumed := make(chan struct{})
	failed := publishPipelined(t, nodes["n1"], channel, "pipe", pipelinedPublishes, func(seq int) {
		if seq == pipelinedPublishes/5 {
			srv.Pause()
			time.AfterFunc(2*testPeerTimeout, func() { srv.Resume(); close(resumed) })
		}
		time.Sleep(5 * time.Millisecond)
	})
	<-resumed
	t.Logf("%d of %d publishes rejected", len(failed), pipelinedPublishes)
	assert.NotEmpty(t, failed, "no publish was rejected while Redis was stopped")
	assert.Less(t, len(failed), pipelinedPublishes, "every publish was rejected")

	waitRedisMesh(t, nodes)
	for id, sub := range subs {
		waitSeries(t, sub, id, channel, "pipe", pipelinedPublishes, failed)
	}
}
