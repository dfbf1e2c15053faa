package checker

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/wscluster/wscluster/history"
)

// Metric names read from the metrics probes.
const (
	loopsReceivedMetric   = "wscluster_peer_envelopes_received_total"
	loopsReplayedMetric   = "wscluster_messages_replayed_total"
	loopsDuplicatesMetric = "wscluster_duplicates_dropped_total"
	loopsStartTimeMetric  = "process_start_time_seconds"
)

// Slack of the loop bound. A node's last scrape before it dies or the run
// ends is up to one scrape interval (2 s) old, and nodes are scraped at
// different moments, so the sums mix counters of different instants. For
// example, a receiver's last scrape can count publishes that its sender
// replayed after its own last scrape, just before it died. Also, a Redis
// PUBLISH whose reply timed out gets 1007 and may still cross, as
// docs/cluster.md notes. The relative part covers busy runs and the
// constant part covers small ones.
const (
	loopsSlackFactor = 1.05
	loopsSlackFixed  = 50
)

// Loops returns the checker of loop freedom, from the nodes' backplane
// counters. Each node counts the publish envelopes it receives from each
// peer. With either engine that is at most one per publish and peer, plus
// the publishes its peers sent again from their replay buffers:
//   - mesh: the mesh is full and nothing is relayed, so a publish crosses
//     each of the N-1 links out of its origin once live, and again only
//     when its origin replays it;
//   - redis: a node does not count its own publish coming back from Redis
//     (that is wscluster_redis_echo_drops_total), and a replay addressed to
//     one peer is counted only by that peer.
//
// So R - replayed <= P x (N-1), where R is the publish envelopes received
// by all nodes, replayed the publishes sent again, P the publishes that may
// have been taken (ok or unknown) and N the number of nodes.
func Loops() Checker { return loopsChecker{} }

type loopsChecker struct{}

func (loopsChecker) Name() string { return "loops" }

// loopsTotals are counter sums over the last scrape of every node
// incarnation.
type loopsTotals struct {
	received, replayed, duplicates float64
	scrapes, incarnations          int
	nodes                          map[string]bool
}

func (t *loopsTotals) add(last map[string]float64) {
	for key, v := range last {
		switch loopsMetricName(key) {
		case loopsReceivedMetric:
			if kind, _ := loopsLabelValue(key, "kind"); kind == "publish" {
				t.received += v
			}
		case loopsReplayedMetric:
			t.replayed += v
		case loopsDuplicatesMetric:
			t.duplicates += v
		}
	}
}

func (loopsChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{}, Stats: map[string]float64{}}
	totals := loopsSum(in.History)
	publishes := loopsCountPublishes(in.History)
	nodes := len(in.Run.Nodes)
	if nodes == 0 {
		nodes = len(totals.nodes)
	}

	// Without a backplane no publish crosses a link.
	perPublish := nodes - 1
	if in.Run.Engine == "none" || in.Run.Engine == "" || nodes <= 1 {
		perPublish = 0
	}
	bound := publishes * perPublish
	excess := totals.received - totals.replayed

	res.Counts["publishes"] = publishes
	res.Counts["nodes"] = nodes
	res.Counts["scrapes"] = totals.scrapes
	res.Counts["incarnations"] = totals.incarnations
	res.Counts["publish-envelopes-received"] = int(totals.received)
	res.Counts["messages-replayed"] = int(totals.replayed)
	res.Counts["duplicates-dropped"] = int(totals.duplicates)
	res.Counts["bound"] = bound
	if publishes > 0 && totals.scrapes > 0 {
		res.Stats["backplane-messages-per-publish"] = totals.received / float64(publishes)
		res.Stats["duplicates-dropped-per-publish"] = totals.duplicates / float64(publishes)
	}
	if bound > 0 && totals.scrapes > 0 {
		res.Stats["bound-ratio"] = excess / float64(bound)
	}

	loopsDecide(&res, totals, publishes, bound, excess)
	return res
}

func loopsDecide(res *Result, totals loopsTotals, publishes, bound int, excess float64) {
	limit := float64(bound)*loopsSlackFactor + loopsSlackFixed
	switch {
	case excess > limit:
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("nodes received %.0f publish envelopes beyond replays for %d publishes, above the bound of %d (limit %.0f with slack): a message crossed a link more than once",
			excess, publishes, bound, limit)
		res.AddAnomaly("loop", Anomaly{Description: res.Summary})
	case totals.scrapes == 0:
		res.Valid = Unknown
		res.Summary = "no metrics scrape in the history, so loop freedom was not measured"
	case publishes == 0:
		res.Valid = Unknown
		res.Summary = "no publish was taken, so loop freedom was not tested"
	case bound == 0:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("no backplane traffic expected (engine none or one node); %.0f publish envelopes received", totals.received)
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("%.2f backplane messages per publish; %.0f received beyond replays is %.0f%% of the bound %d",
			res.Stats["backplane-messages-per-publish"], excess, 100*res.Stats["bound-ratio"], bound)
	}
}

// loopsSum adds up every node's counters over the whole run. Counters start
// again at zero when a node restarts, and a per-peer series also starts
// again when the node deletes it while the peer is down and creates it when
// the peer returns. So each series is summed like Prometheus handles a
// counter reset: a value lower than the one before adds the one before to
// the series' base.
func loopsSum(ops []history.Op) loopsTotals {
	totals := loopsTotals{nodes: map[string]bool{}}
	series := map[string]*loopsNodeSeries{}
	for i := range ops {
		op := &ops[i]
		if op.Type != history.Probe || op.F != history.FMetrics || op.Metrics == nil {
			continue
		}
		totals.scrapes++
		totals.nodes[op.Node] = true
		s := series[op.Node]
		if s == nil {
			s = &loopsNodeSeries{base: map[string]float64{}, last: map[string]float64{}}
			series[op.Node] = s
			totals.incarnations++
		} else if loopsNewIncarnation(s.prev, op) {
			s.restart()
			totals.incarnations++
		}
		s.observe(op)
	}
	for _, s := range series {
		totals.add(s.sums())
	}
	return totals
}

// loopsNodeSeries accumulates one node's counters across resets.
type loopsNodeSeries struct {
	base, last map[string]float64
	prev       *history.Op
}

// restart moves every last value into the base, because the new process
// counts from zero.
func (s *loopsNodeSeries) restart() {
	for key, v := range s.last {
		s.base[key] += v
	}
	clear(s.last)
}

func (s *loopsNodeSeries) observe(op *history.Op) {
	for key, v := range op.Metrics {
		if old, ok := s.last[key]; ok && v < old {
			s.base[key] += old
		}
		s.last[key] = v
	}
	s.prev = op
}

func (s *loopsNodeSeries) sums() map[string]float64 {
	out := make(map[string]float64, len(s.last))
	for key, v := range s.base {
		out[key] += v
	}
	for key, v := range s.last {
		out[key] += v
	}
	return out
}

// loopsNewIncarnation reports whether scrape next comes from another
// process than scrape prev of the same node, by its incarnation or, for
// scrapes without one, its process start time.
func loopsNewIncarnation(prev, next *history.Op) bool {
	if prev.Incarnation != "" && next.Incarnation != "" {
		return prev.Incarnation != next.Incarnation
	}
	a, okA := prev.Metrics[loopsStartTimeMetric]
	b, okB := next.Metrics[loopsStartTimeMetric]
	return okA && okB && a != b
}

// loopsCountPublishes counts the publishes that may have been taken: every
// publish invoked, less those that failed. A publish without a completion,
// as at the end of a crashed run, is counted like an unknown outcome.
func loopsCountPublishes(ops []history.Op) int {
	n := 0
	for i := range ops {
		if ops[i].F != history.FPublish {
			continue
		}
		switch ops[i].Type {
		case history.Invoke:
			n++
		case history.Fail:
			n--
		}
	}
	return n
}

// loopsMetricName returns the metric name of a metrics key such as
// `wscluster_peer_envelopes_received_total{kind="publish",peer="n2"}`.
func loopsMetricName(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		return key[:i]
	}
	return key
}

// loopsLabelValue returns the value of one label of a metrics key, which
// writes labels as in the Prometheus text format, in any order.
func loopsLabelValue(key, label string) (string, bool) {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return "", false
	}
	rest := strings.TrimSuffix(key[i+1:], "}")
	for rest != "" {
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return "", false
		}
		quoted, err := strconv.QuotedPrefix(after)
		if err != nil {
			return "", false
		}
		if strings.TrimSpace(name) == label {
			value, err := strconv.Unquote(quoted)
			return value, err == nil
		}
		rest = strings.TrimLeft(after[len(quoted):], ", ")
	}
	return "", false
}
