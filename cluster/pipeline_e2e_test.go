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
	"github.com/wscluster/wscluster/internal/redistest"
)

// pipelinedPublishes is how many publishes one connection writes without
// waiting for a result: more than pubsub's default of 64 in flight, so the
// connection also waits for free slots.
const pipelinedPublishes = 500

// publishPipelined writes count publish requests on channel to node n in a
// row, without waiting for results, then waits for every result. It
// returns how many results were errors.
func publishPipelined(t *testing.T, n httpNode, channel, publisher string, count int) int {
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
		frame := fmt.Sprintf(`{"jsonrpc":"2.0","id":"p%d","method":"publish","params":{"channel":%q,"data":%s,"qos":%d}}`,
			seq, channel, data, seq%2)
		require.NoError(t, pub.WriteRaw(1, []byte(frame)))
	}

	failed := 0
	answered := map[string]bool{}
	for range count {
		select {
		case raw := <-replies:
			var reply struct {
				ID    string          `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			require.NoError(t, json.Unmarshal(raw, &reply))
			require.False(t, answered[reply.ID], "publish %s answered twice", reply.ID)
			answered[reply.ID] = true
			if reply.Error != nil {
				failed++
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%d of %d pipelined publishes got no result", count-len(answered), count)
		}
	}
	return failed
}

// A connection that writes many publishes without waiting gets every
// result, and every node delivers them once each, in order.
func TestMeshPipelinedPublishesKeepOrder(t *testing.T) {
	t.Parallel()
	c := startProxiedCluster(t, []string{"n1", "n2", "n3"}, nil)
	const channel = "pipelined"
	subs := subscribeOnEach(t, c.nodes, channel)

	failed := publishPipelined(t, c.nodes["n1"], channel, "pipe", pipelinedPublishes)
	require.Zero(t, failed, "a mesh rejected publishes")
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

	failed := publishPipelined(t, nodes["n1"], channel, "pipe", pipelinedPublishes)
	assert.Zero(t, failed, "publishes rejected while Redis was up")
	for id, sub := range subs {
		waitDelivery(t, sub, id, channel, map[string]int{"pipe": pipelinedPublishes})
	}
}
