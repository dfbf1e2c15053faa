package checker

import (
	"testing"
	"time"

	"github.com/wscluster/wscluster/history"
)

// pubsubLatencyHistory has publisher process 0 on n1 publish seqs 1 to 100,
// seq s at 1000 + 100 s ms. Subscriber 10 on n1 receives seq s after s ms
// and subscriber 11 on n2 after 100 + s ms, so the latencies are 1 to 200
// ms and the cross-node ones 101 to 200 ms.
func pubsubLatencyHistory() *pubsubHistory {
	h := &pubsubHistory{}
	h.connect(10, 1, "n1")
	h.subscribe(10, 1, "n1", pubsubChannel)
	h.connect(11, 1, "n2")
	h.subscribe(11, 1, "n2", pubsubChannel)
	for s := int64(1); s <= 100; s++ {
		sent := 1000 + 100*s
		data := h.at(sent).publish(0, 1, "n1", pubsubChannel, s, history.Ok)
		h.at(sent+s).message(10, 1, "n1", pubsubChannel, pubsubMsgID(0, 1, s), data, false)
		h.at(sent+100+s).message(11, 1, "n2", pubsubChannel, pubsubMsgID(0, 1, s), data, false)
	}
	return h
}

func TestLatencyQuantiles(t *testing.T) {
	h := pubsubLatencyHistory()
	// Repeats and redeliveries are no first deliveries, and a failed
	// publish has no latency.
	h.at(20000).message(10, 1, "n1", pubsubChannel, "m0.1.1", pubsubData(0, 1, 1), true)
	h.message(11, 1, "n2", pubsubChannel, "m0.1.2", pubsubData(0, 1, 2), false)
	failed := h.publish(0, 1, "n1", pubsubChannel, 101, history.Fail)
	h.message(11, 1, "n2", pubsubChannel, "m-fail", failed, false)

	res := Latency().Check(Input{Run: pubsubRun("mesh"), History: h.ops})
	t.Logf("%s: %s %v %v", res.Valid, res.Summary, res.Counts, res.Stats)
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
	want := map[string]float64{
		"latency-p0-ms": 1, "latency-p50-ms": 100, "latency-p95-ms": 190, "latency-p99-ms": 198, "latency-p100-ms": 200,
		"cross-node-latency-p0-ms": 101, "cross-node-latency-p50-ms": 150, "cross-node-latency-p100-ms": 200,
	}
	for name, v := range want {
		if got, ok := res.Stats[name]; !ok || got != v {
			t.Errorf("Stats[%q] = %v (present %t), want %v", name, got, ok, v)
		}
	}
	pubsubExpectCounts(t, res, map[string]int{"publishes-ok": 100, "deliveries": 200, "cross-node-deliveries": 100})
	if res.Stats["deliveries-per-second"] <= 0 {
		t.Errorf("deliveries-per-second = %v, want > 0", res.Stats["deliveries-per-second"])
	}
}

func TestLatencyNoCrossNodeDeliveries(t *testing.T) {
	h := &pubsubHistory{}
	data := h.at(1000).publish(0, 1, "n1", pubsubChannel, 1, history.Ok)
	h.at(1005).message(10, 1, "n1", pubsubChannel, "m0.1.1", data, false)
	res := Latency().Check(Input{Run: pubsubRun("mesh"), History: h.ops})
	if res.Stats["latency-p50-ms"] != 5 {
		t.Errorf("latency-p50-ms = %v, want 5", res.Stats["latency-p50-ms"])
	}
	if _, ok := res.Stats["cross-node-latency-p50-ms"]; ok {
		t.Errorf("cross-node-latency-p50-ms present without cross-node deliveries")
	}
}

func TestLatencyVerdictUnknownWithoutDeliveries(t *testing.T) {
	h := &pubsubHistory{}
	h.publish(0, 1, "n1", pubsubChannel, 1, history.Ok)
	res := Latency().Check(Input{Run: pubsubRun("mesh"), History: h.ops})
	if res.Valid != Unknown {
		t.Errorf("verdict = %s, want unknown", res.Valid)
	}
}

func TestLatencySeriesBuckets(t *testing.T) {
	points := LatencySeries(pubsubLatencyHistory().ops, time.Second)
	// The last delivery is at 11.2 s.
	if len(points) != 12 {
		t.Fatalf("len(points) = %d, want 12", len(points))
	}
	if want := (LatencyPoint{}); points[0] != want {
		t.Errorf("points[0] = %+v, want an empty bucket at 0", points[0])
	}

	// Bucket 1 holds seqs 1 to 9 (publishes at 1.1 to 1.9 s): nine first
	// deliveries to n1 (1 to 9 ms) and eight to n2 (101 to 108 ms).
	want := LatencyPoint{Start: time.Second, Deliveries: 17, P50Ms: 9, P99Ms: 108, PublishesOk: 9}
	if points[1] != want {
		t.Errorf("points[1] = %+v, want %+v", points[1], want)
	}

	publishes, deliveries := 0, 0
	for _, p := range points {
		publishes += p.PublishesOk
		deliveries += p.Deliveries
	}
	if publishes != 100 {
		t.Errorf("publishes ok over all buckets = %d, want 100", publishes)
	}
	if deliveries != 200 {
		t.Errorf("deliveries over all buckets = %d, want 200", deliveries)
	}
}

func TestLatencySeriesDefaultBucketAndEmpty(t *testing.T) {
	if points := LatencySeries(nil, time.Second); len(points) != 0 {
		t.Errorf("LatencySeries(nil) = %v, want none", points)
	}
	points := LatencySeries(pubsubLatencyHistory().ops, 0)
	if len(points) != 12 {
		t.Errorf("bucket 0: len(points) = %d, want 12 one-second buckets", len(points))
	}
}

func TestNearestRankQuantile(t *testing.T) {
	sorted := []float64{10, 20, 30, 40}
	cases := []struct {
		q    float64
		want float64
	}{{0, 10}, {0.25, 10}, {0.5, 20}, {0.51, 30}, {0.99, 40}, {1, 40}}
	for _, tc := range cases {
		if got := nearestRankQuantile(sorted, tc.q); got != tc.want {
			t.Errorf("q %v: got %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := nearestRankQuantile(nil, 0.5); got != 0 {
		t.Errorf("no samples: got %v, want 0", got)
	}
}
