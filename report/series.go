package report

import (
	"cmp"
	"math"
	"slices"

	"github.com/wscluster/wscluster/history"
)

// Bucket limits. The report aggregates the history into fixed time buckets
// so that its size depends on the run's length, not on its entry count.
const (
	minBucket  = int64(500e6) // 500 ms
	maxBuckets = 400
)

// buckets splits the run time [0, end] into n buckets, each width
// nanoseconds long.
type buckets struct {
	width int64
	n     int
}

// newBuckets uses 500 ms buckets, widened in steps of 500 ms when the run
// is too long for maxBuckets of them.
func newBuckets(end int64) buckets {
	width := minBucket
	if end > width*maxBuckets {
		steps := (end/maxBuckets + minBucket - 1) / minBucket
		width = steps * minBucket
	}
	return buckets{width: width, n: int(end/width) + 1}
}

// index returns the bucket of time t, clamped into range.
func (b buckets) index(t int64) int {
	return min(max(int(t/b.width), 0), b.n-1)
}

// start and mid return the bucket's start and middle in seconds.
func (b buckets) start(i int) float64 { return seconds(int64(i) * b.width) }
func (b buckets) mid(i int) float64   { return seconds(int64(i)*b.width + b.width/2) }

// seconds converts history nanoseconds to seconds.
func seconds(ns int64) float64 { return float64(ns) / 1e9 }

// endTime returns the latest time in the history.
func endTime(ops []history.Op) int64 {
	var end int64
	for _, op := range ops {
		end = max(end, op.Time)
	}
	return end
}

// opCounts are the completions of one operation name per bucket.
type opCounts struct {
	Name             string
	Ok, Failed, Info []int
}

// clientOpOrder is the lane order of the operation timeline. Other names
// follow in alphabetical order.
var clientOpOrder = []string{
	history.FConnect, history.FSubscribe, history.FUnsubscribe, history.FPublish,
	history.FJoin, history.FLeave, history.FMembers, history.FDrop,
}

// countOps counts client completions (ok, fail, info) per operation name
// and bucket, by completion time.
func countOps(ops []history.Op, b buckets) []opCounts {
	byName := map[string]*opCounts{}
	for _, op := range ops {
		if op.Process < 0 || (op.Type != history.Ok && op.Type != history.Fail && op.Type != history.Info) {
			continue
		}
		c := byName[op.F]
		if c == nil {
			c = &opCounts{Name: op.F, Ok: make([]int, b.n), Failed: make([]int, b.n), Info: make([]int, b.n)}
			byName[op.F] = c
		}
		i := b.index(op.Time)
		switch op.Type {
		case history.Ok:
			c.Ok[i]++
		case history.Fail:
			c.Failed[i]++
		default:
			c.Info[i]++
		}
	}

	out := make([]opCounts, 0, len(byName))
	for _, c := range byName {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(x, y opCounts) int {
		return cmp.Or(cmp.Compare(laneRank(x.Name), laneRank(y.Name)), cmp.Compare(x.Name, y.Name))
	})
	return out
}

func laneRank(name string) int {
	if i := slices.Index(clientOpOrder, name); i >= 0 {
		return i
	}
	return len(clientOpOrder)
}

// latencyBucket is the publish-to-delivery latency of the deliveries in one
// bucket, by delivery time. P50 and P99 are NaN when N is 0.
type latencyBucket struct {
	N        int
	P50, P99 float64 // milliseconds
	Rate     float64 // deliveries per second
}

// payloadKey identifies one publish by its payload and channel.
type payloadKey struct {
	process, epoch int
	seq            int64
	channel        string
}

// latencySeries matches every message event to the invoke time of its
// publish and returns the latency percentiles and the delivery rate per
// bucket. It matches by message id, and by payload for deliveries of a
// publish whose outcome is unknown (info) and so has no message id.
// Deliveries that match no publish count towards the rate only.
func latencySeries(ops []history.Op, b buckets) []latencyBucket {
	byID, byPayload := publishInvokeTimes(ops)
	lat := make([][]float64, b.n)
	count := make([]int, b.n)
	for _, op := range ops {
		if op.Type != history.Event || op.F != history.FMessage {
			continue
		}
		i := b.index(op.Time)
		count[i]++
		t, ok := byID[op.MsgID]
		if !ok {
			t, ok = lookupPayload(byPayload, op)
		}
		if ok {
			lat[i] = append(lat[i], float64(op.Time-t)/1e6)
		}
	}

	out := make([]latencyBucket, b.n)
	for i := range out {
		out[i] = latencyBucket{N: len(lat[i]), P50: math.NaN(), P99: math.NaN(), Rate: float64(count[i]) / seconds(b.width)}
		if len(lat[i]) > 0 {
			slices.Sort(lat[i])
			out[i].P50 = percentile(lat[i], 0.50)
			out[i].P99 = percentile(lat[i], 0.99)
		}
	}
	return out
}

// publishInvokeTimes returns the invoke time of every publish by message id
// (publishes that completed ok) and by payload (publishes that ended info).
// It relies on each publisher having at most one publish in flight.
func publishInvokeTimes(ops []history.Op) (map[string]int64, map[payloadKey]int64) {
	pending := map[int]history.Op{}
	byID := map[string]int64{}
	byPayload := map[payloadKey]int64{}
	for _, op := range ops {
		if op.F != history.FPublish || op.Process < 0 {
			continue
		}
		switch op.Type {
		case history.Invoke:
			pending[op.Process] = op
		case history.Ok:
			if inv, ok := pending[op.Process]; ok && op.MsgID != "" {
				byID[op.MsgID] = inv.Time
			}
			delete(pending, op.Process)
		case history.Info:
			if inv, ok := pending[op.Process]; ok {
				if p, err := history.ParsePayload(inv.Value); err == nil {
					byPayload[payloadKey{p.Process, p.Epoch, p.Seq, inv.Channel}] = inv.Time
				}
			}
			delete(pending, op.Process)
		case history.Fail:
			delete(pending, op.Process)
		}
	}
	return byID, byPayload
}

func lookupPayload(byPayload map[payloadKey]int64, msg history.Op) (int64, bool) {
	if len(byPayload) == 0 {
		return 0, false
	}
	p, err := history.ParsePayload(msg.Value)
	if err != nil {
		return 0, false
	}
	t, ok := byPayload[payloadKey{p.Process, p.Epoch, p.Seq, msg.Channel}]
	return t, ok
}

// percentile returns the q-quantile of sorted values by the nearest-rank
// method.
func percentile(sorted []float64, q float64) float64 {
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// nodeSeries is one value per bucket for one node. NaN means no sample.
type nodeSeries struct {
	Node   string
	Values []float64
}

// rosterSeries returns, per node and bucket, the number of members the node
// returned for its presence channels: the sum over channels of each
// channel's latest members read so far. A bucket without any members read
// on the node is NaN, so the chart shows a gap while a node is down.
func rosterSeries(ops []history.Op, b buckets) []nodeSeries {
	type state struct {
		latest map[string]int
		values []float64
	}
	nodes := map[string]*state{}
	for _, op := range ops {
		if op.Type != history.Ok || op.F != history.FMembers || op.Node == "" {
			continue
		}
		s := nodes[op.Node]
		if s == nil {
			s = &state{latest: map[string]int{}, values: nanSlice(b.n)}
			nodes[op.Node] = s
		}
		s.latest[op.Channel] = len(op.Members)
		total := 0
		for _, n := range s.latest {
			total += n
		}
		s.values[b.index(op.Time)] = float64(total)
	}

	out := make([]nodeSeries, 0, len(nodes))
	for node, s := range nodes {
		out = append(out, nodeSeries{Node: node, Values: s.values})
	}
	slices.SortFunc(out, func(x, y nodeSeries) int { return compareNodes(x.Node, y.Node) })
	return out
}

func nanSlice(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

// readiness is the state of a node's /readyz probe, ordered from best to
// worst.
type readiness int

const (
	noSample readiness = iota
	ready
	notReady
	noAnswer
)

// readinessSeries returns, per node and bucket, the worst probe state seen
// in the bucket, so a short outage stays visible in a wide bucket.
func readinessSeries(ops []history.Op, b buckets) map[string][]readiness {
	out := map[string][]readiness{}
	for _, op := range ops {
		if op.Type != history.Probe || op.F != history.FReady || op.Node == "" {
			continue
		}
		s := out[op.Node]
		if s == nil {
			s = make([]readiness, b.n)
			out[op.Node] = s
		}
		st := noAnswer
		if op.Error == "" && op.Ready != nil {
			st = notReady
			if *op.Ready {
				st = ready
			}
		}
		i := b.index(op.Time)
		s[i] = max(s[i], st)
	}
	return out
}

// compareNodes orders node ids by length, then alphabetically, so n2 comes
// before n10.
func compareNodes(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}
