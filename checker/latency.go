package checker

import (
	"bytes"
	"fmt"
	"time"

	"github.com/wscluster/wscluster/history"
)

// Latency returns a checker that measures publish-to-delivery latency: the
// time from a publish's invoke to each connection's first delivery of it,
// overall and for deliveries to another node than the publisher's. It is
// a measurement, not a guarantee: any data is Valid, none is Unknown.
func Latency() Checker { return latencyChecker{} }

type latencyChecker struct{}

func (latencyChecker) Name() string { return "latency" }

func (latencyChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{}, Stats: map[string]float64{}}
	idx := pubsubIndexPublishes(in.History)
	var all, crossNode []float64
	latencyEachFirstDelivery(in.History, &idx, func(op *history.Op, p *pubsubPublish) {
		ms := nanosToMillis(op.Time - p.time)
		all = append(all, ms)
		if op.Node != p.node {
			crossNode = append(crossNode, ms)
		}
	})
	addLatencyStats(res.Stats, "latency", all)
	addLatencyStats(res.Stats, "cross-node-latency", crossNode)

	// Throughput over the span from the first publish to the last
	// delivery, the time the workload kept the cluster busy.
	first, last := latencyTrafficSpan(in.History, &idx)
	res.Counts["publishes-ok"] = latencyCountOk(&idx)
	res.Counts["deliveries"] = len(all)
	res.Counts["cross-node-deliveries"] = len(crossNode)
	if span := time.Duration(last - first).Seconds(); span > 0 {
		res.Stats["publishes-ok-per-second"] = float64(res.Counts["publishes-ok"]) / span
		res.Stats["deliveries-per-second"] = float64(len(all)) / span
	}

	if len(all) == 0 {
		res.Valid = Unknown
		res.Summary = "no message delivered a recorded publish, so latency was not measured"
		return res
	}
	res.Valid = Valid
	res.Summary = fmt.Sprintf("%d first deliveries: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		len(all), res.Stats["latency-p50-ms"], res.Stats["latency-p99-ms"], res.Stats["latency-p100-ms"])
	return res
}

// latencyEachFirstDelivery calls fn for each message that is the first
// delivery of a publish to its connection. It skips repeats, messages that
// match no publish, and deliveries of failed publishes, which Delivery
// reports.
func latencyEachFirstDelivery(ops []history.Op, idx *pubsubIndex, fn func(op *history.Op, p *pubsubPublish)) {
	type received struct {
		conn deliveryConn
		pub  int
	}
	seen := map[received]struct{}{}
	var buf bytes.Buffer
	for i := range ops {
		op := &ops[i]
		if op.Type != history.Event || op.F != history.FMessage {
			continue
		}
		j, err := idx.lookup(op, &buf)
		if err != nil || j < 0 || idx.pubs[j].status == history.Fail {
			continue
		}
		key := received{deliveryConn{op.Process, op.Epoch}, j}
		if _, ok := seen[key]; ok {
			continue
		}
		seen[key] = struct{}{}
		fn(op, &idx.pubs[j])
	}
}

func latencyCountOk(idx *pubsubIndex) int {
	n := 0
	for i := range idx.pubs {
		if idx.pubs[i].status == history.Ok {
			n++
		}
	}
	return n
}

// latencyTrafficSpan returns the time of the first publish invoke and of the
// last message event.
func latencyTrafficSpan(ops []history.Op, idx *pubsubIndex) (first, last int64) {
	if len(idx.pubs) == 0 {
		return 0, 0
	}
	first = idx.pubs[0].time
	for i := range idx.pubs {
		first = min(first, idx.pubs[i].time)
	}
	last = first
	for i := range ops {
		if ops[i].Type == history.Event && ops[i].F == history.FMessage {
			last = max(last, ops[i].Time)
		}
	}
	return first, last
}

// LatencyPoint is one time bucket of a run, for the report's charts.
type LatencyPoint struct {
	// Start is the bucket's start since the run started.
	Start time.Duration `json:"start"`
	// Deliveries counts the first deliveries received in the bucket.
	Deliveries int `json:"deliveries"`
	// P50Ms and P99Ms are the latency quantiles of those deliveries in
	// milliseconds, 0 when there were none.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// PublishesOk counts the publishes invoked in the bucket that
	// completed ok.
	PublishesOk int `json:"publishes_ok"`
}

// LatencySeries splits a history into buckets of the given width, from
// time 0 to its last publish or delivery, and returns the deliveries,
// latency and successful publishes of each, with the same definitions as
// Latency. A bucket width of zero or less means one second.
func LatencySeries(ops []history.Op, bucket time.Duration) []LatencyPoint {
	if bucket <= 0 {
		bucket = time.Second
	}
	width := int64(bucket)
	idx := pubsubIndexPublishes(ops)
	var samples [][]float64
	var points []LatencyPoint
	grow := func(t int64) int {
		b := int(max(t, 0) / width)
		for len(points) <= b {
			points = append(points, LatencyPoint{Start: time.Duration(len(points)) * bucket})
			samples = append(samples, nil)
		}
		return b
	}

	for i := range idx.pubs {
		if idx.pubs[i].status == history.Ok {
			points[grow(idx.pubs[i].time)].PublishesOk++
		}
	}
	latencyEachFirstDelivery(ops, &idx, func(op *history.Op, p *pubsubPublish) {
		b := grow(op.Time)
		points[b].Deliveries++
		samples[b] = append(samples[b], nanosToMillis(op.Time-p.time))
	})

	stats := map[string]float64{}
	for b := range points {
		clear(stats)
		addLatencyStats(stats, "latency", samples[b])
		points[b].P50Ms, points[b].P99Ms = stats["latency-p50-ms"], stats["latency-p99-ms"]
	}
	return points
}
