package checker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

var totalRun = Run{Engine: "redis", Nodes: []string{"n1", "n2", "n3"}, Ordering: "total", PeerTimeout: 3 * time.Second}

// payload returns the data of publish seq of connection (p, 1).
func payload(p int, seq int64) json.RawMessage {
	b, err := json.Marshal(history.Payload{Process: p, Epoch: 1, Seq: seq, Pad: "xx"})
	if err != nil {
		panic(err)
	}
	return b
}

func (b *phBuilder) publish(p int, seq int64, ch string, from, to time.Duration, typ history.Type) {
	op := history.Op{F: history.FPublish, Process: p, Epoch: 1, Node: "n1", Channel: ch, Value: payload(p, seq)}
	if typ == history.Ok {
		op.MsgID = fmt.Sprintf("id-%d-%d", p, seq)
	}
	b.call(op, from, to, typ)
}

// deliver adds the delivery of publish seq of process p to subscriber
// connection (sub, 1).
func (b *phBuilder) deliver(sub, p int, seq int64, ch string, at time.Duration, redelivered bool) {
	b.add(history.Op{Type: history.Event, F: history.FMessage, Process: sub, Epoch: 1, Node: "n2", Channel: ch,
		MsgID: fmt.Sprintf("id-%d-%d", p, seq), Value: payload(p, seq), Redelivered: redelivered, Time: int64(at)})
}

// totalBase publishes A (process 1, seq 1) and B (process 2, seq 1)
// concurrently, then C (process 1, seq 2) after both.
func totalBase() *phBuilder {
	b := &phBuilder{}
	b.publish(1, 1, "c", ms(1000), ms(1010), history.Ok)
	b.publish(2, 1, "c", ms(1005), ms(1020), history.Ok)
	b.publish(1, 2, "c", ms(2000), ms(2010), history.Ok)
	return b
}

func TestTotalOrderNotApplicable(t *testing.T) {
	run := totalRun
	run.Ordering = ""

	res := TotalOrder().Check(totalBase().input(run))

	assert.Equal(t, Valid, res.Valid)
	assert.Contains(t, res.Summary, "not applicable")
}

func TestTotalOrderValid(t *testing.T) {
	b := totalBase()
	// Subscribers 10 and 11 see B before A, and 12 missed A.
	for _, sub := range []int{10, 11} {
		b.deliver(sub, 2, 1, "c", ms(1030), false)
		b.deliver(sub, 1, 1, "c", ms(1031), false)
		b.deliver(sub, 1, 2, "c", ms(2020), false)
	}
	b.deliver(12, 2, 1, "c", ms(1030), false)
	b.deliver(12, 1, 2, "c", ms(2020), false)
	// A QoS 1 redelivery comes late by design.
	b.deliver(11, 2, 1, "c", ms(3000), true)

	res := TotalOrder().Check(b.input(totalRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 3, res.Counts["subscribers"])
	assert.Equal(t, 8, res.Counts["first-deliveries"])
	assert.Equal(t, 1, res.Counts["porcupine-ok"])
}

func TestTotalOrderConflict(t *testing.T) {
	b := totalBase()
	b.deliver(10, 1, 1, "c", ms(1030), false)
	b.deliver(10, 2, 1, "c", ms(1031), false)
	b.deliver(11, 2, 1, "c", ms(1030), false)
	b.deliver(11, 1, 1, "c", ms(1031), false)

	res := TotalOrder().Check(b.input(totalRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["order-conflict"])
	require.Len(t, res.Anomalies["order-conflict"], 1)
	a := res.Anomalies["order-conflict"][0]
	assert.Contains(t, a.Description, "p1.e1.s1 before p2.e1.s1 at p10.e1")
	assert.Contains(t, a.Description, "p2.e1.s1 before p1.e1.s1 at p11.e1")
	assert.Len(t, a.Ops, 2)
}

func TestTotalOrderLongCycle(t *testing.T) {
	// Three subscribers each see two of three messages, in orders that
	// form the cycle A < B < C < A, although no two of them disagree on a
	// pair.
	b := totalBase()
	b.deliver(10, 1, 1, "c", ms(2100), false)
	b.deliver(10, 2, 1, "c", ms(2101), false)
	b.deliver(11, 2, 1, "c", ms(2100), false)
	b.deliver(11, 1, 2, "c", ms(2101), false)
	b.deliver(12, 1, 2, "c", ms(2100), false)
	b.deliver(12, 1, 1, "c", ms(2101), false)

	res := TotalOrder().Check(b.input(totalRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	require.Len(t, res.Anomalies["order-conflict"], 1)
	assert.Len(t, res.Anomalies["order-conflict"][0].Ops, 3)
}

func TestTotalOrderAgainstRealTime(t *testing.T) {
	// Every subscriber receives C before A, although A's publish returned
	// before C's began.
	b := totalBase()
	for _, sub := range []int{10, 11} {
		b.deliver(sub, 1, 2, "c", ms(2020), false)
		b.deliver(sub, 1, 1, "c", ms(2021), false)
	}
	in := b.input(totalRun)
	in.Dir = t.TempDir()

	res := TotalOrder().Check(in)

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["order-conflict"])
	assert.Equal(t, 1, res.Counts["not-linearizable"])
	require.Len(t, res.Anomalies["not-linearizable"], 1)
	assert.Contains(t, res.Anomalies["not-linearizable"][0].Description, "deliver p1.e1.s1 after p1.e1.s2")
	require.Equal(t, []string{"linear-order-c.html"}, res.Artifacts)
	_, err := os.Stat(filepath.Join(in.Dir, "linear-order-c.html"))
	assert.NoError(t, err)
}

func TestTotalOrderUnknownPublish(t *testing.T) {
	// A publish that timed out, or failed although it was delivered, may
	// have been appended at any time after its invoke.
	b := &phBuilder{}
	b.publish(1, 1, "c", ms(1000), ms(3000), history.Info)
	b.publish(2, 1, "c", ms(2000), ms(2010), history.Fail)
	b.publish(3, 1, "c", ms(2500), ms(2510), history.Ok)
	b.deliver(10, 3, 1, "c", ms(2520), false)
	b.deliver(10, 2, 1, "c", ms(4000), false)
	b.deliver(10, 1, 1, "c", ms(4001), false)

	res := TotalOrder().Check(b.input(totalRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["porcupine-ok"])
}

func TestTotalOrderNoDeliveries(t *testing.T) {
	res := TotalOrder().Check(totalBase().input(totalRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
}

func TestTotalOrderLargeChannel(t *testing.T) {
	// One publisher and three subscribers that see everything in order:
	// the direct check decides, and porcupine checks up to its limit.
	b := &phBuilder{}
	const n = 2000
	for i := range int64(n) {
		at := ms(int(10 * (i + 1)))
		b.publish(1, i+1, "c", at, at+ms(2), history.Ok)
		for sub := 10; sub < 13; sub++ {
			b.deliver(sub, 1, i+1, "c", at+ms(3+sub-10), false)
		}
	}
	start := time.Now()

	res := TotalOrder().Check(b.input(totalRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["porcupine-ok"])
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestTotalOrderAncestorSteps(t *testing.T) {
	ls := &totalOrderLogs{entries: map[totalOrderLink]*totalOrderLog{}, byKey: map[totalOrderKey][]*totalOrderLog{}}
	var tip *totalOrderLog
	const n = 100000
	for i := range n {
		tip = ls.appendTo(tip, totalOrderKey{seq: int64(i)})
	}
	worst := 0
	for target := 1; target <= n; target += 97 {
		steps := 0
		for l := tip; l.length > target; steps++ {
			if l.jump != nil && l.jump.length >= target {
				l = l.jump
			} else {
				l = l.parent
			}
		}
		worst = max(worst, steps)
		require.Equal(t, totalOrderKey{seq: int64(target - 1)}, tip.ancestorAt(target).key)
	}
	assert.LessOrEqual(t, worst, 64, "a lookup in a log of %d messages should take O(log n) steps", n)
	assert.Nil(t, tip.ancestorAt(n+1))
}
