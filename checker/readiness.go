package checker

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Slack of the readiness rules.
const (
	// readinessCutSlack is added to the peer timeout before a cut node
	// must return 503, because the node's failure detector runs four times
	// per heartbeat interval and a probe runs every 250 ms.
	readinessCutSlack = time.Second
	// readinessEndSlack ends the span in which a cut node must return 503
	// this long before the fault's stop entry. The nemesis records a stop
	// only after the fault's Stop returned, so the network may have healed
	// a moment before the entry.
	//
	// NOTE: a kill's Stop restarts the node and waits for its /healthz, so
	// when a node is cut because every peer is dead, a restart slower than
	// this slack can make a correct 200 look early.
	readinessEndSlack = time.Second
	// readinessHealSlack is added to 2 x peer timeout after the heal before
	// every node must return 200.
	readinessHealSlack = 2 * time.Second
)

// Readiness returns the checker of the contract's guarantee 9, honest
// readiness, from the /readyz probes. Probes without a response are
// ignored.
//
//   - A node can be cut off from every other node that is up (mesh), or from
//     Redis (redis, including while Redis is killed or paused). When that
//     lasts longer than peer timeout + 1 s, the node must return 503 from
//     then until the fault stops: "ready-while-cut".
//   - Every node must return 200 from 2 x peer timeout + 2 s after the heal:
//     "not-ready-after-heal".
//   - In the main phase, a node may return 503 only during a fault or in the
//     2 x peer timeout after one: "unready-without-fault". With the engine
//     "none" a node is always ready, so every 503 is one.
//
// The stat "recovery-to-ready-ms" is the longest time from the heal to a
// node's first 200.
func Readiness() Checker { return readinessChecker{} }

type readinessChecker struct{}

func (readinessChecker) Name() string { return "readiness" }

// readinessProbe is one /readyz probe that got a response.
type readinessProbe struct {
	time  int64
	ready bool
	index int
}

// readinessRun holds the state of one Check.
type readinessRun struct {
	in          Input
	nodes       []string
	probes      map[string][]readinessProbe
	windows     []Window
	phases      map[string]int64
	peerTimeout time.Duration
	res         Result
	// unknown is the reason the verdict cannot be Valid, or empty.
	unknown string
}

func (readinessChecker) Check(in Input) Result {
	_, peerTimeout, _ := presenceTimings(in.Run)
	r := &readinessRun{
		in:          in,
		nodes:       presenceNodes(in.Run, in.History),
		probes:      readinessProbes(in.History),
		windows:     Windows(in.History),
		phases:      PhaseTimes(in.History),
		peerTimeout: peerTimeout,
		res:         Result{Counts: map[string]int{}, Stats: map[string]float64{}},
	}
	for _, kind := range []string{"probes", "ready-while-cut", "not-ready-after-heal", "unready-without-fault"} {
		r.res.Counts[kind] = 0
	}
	for _, ps := range r.probes {
		r.res.Counts["probes"] += len(ps)
	}
	if r.res.Counts["probes"] == 0 {
		r.res.Valid, r.res.Summary = Unknown, "no /readyz probe was answered"
		return r.res
	}

	switch in.Run.Engine {
	case "none":
		r.checkAlwaysReady()
	case "mesh", "redis":
		r.checkCut()
		r.checkAfterHeal()
		r.checkWithoutFault()
	default:
		r.res.Valid = Unknown
		r.res.Summary = fmt.Sprintf("engine %q is not none, mesh or redis, so readiness cannot be judged", in.Run.Engine)
		return r.res
	}
	r.decide()
	return r.res
}

// readinessProbes returns the /readyz probes of every node that got a
// response, in time order.
func readinessProbes(ops []history.Op) map[string][]readinessProbe {
	probes := map[string][]readinessProbe{}
	for _, op := range ops {
		if op.Type == history.Probe && op.F == history.FReady && op.Ready != nil {
			probes[op.Node] = append(probes[op.Node], readinessProbe{time: op.Time, ready: *op.Ready, index: op.Index})
		}
	}
	for _, ps := range probes {
		slices.SortStableFunc(ps, func(a, b readinessProbe) int { return cmp.Compare(a.time, b.time) })
	}
	return probes
}

// flagRuns reports every run of consecutive probes of node between from and
// to for which bad is true as one anomaly of kind, because a node that
// stays in the wrong state fails every probe for a while.
func (r *readinessRun) flagRuns(kind, node string, from, to int64, bad func(p readinessProbe) bool, why string) {
	var run []readinessProbe
	flush := func() {
		if len(run) == 0 {
			return
		}
		first, last := run[0], run[len(run)-1]
		r.res.AddAnomaly(kind, Anomaly{
			Description: fmt.Sprintf("%s returned %s in %d probes from %.1f s to %.1f s: %s",
				node, readinessAnswer(first.ready), len(run), float64(first.time)/1e9, float64(last.time)/1e9, why),
			Time: first.time, Ops: []int{first.index, last.index}, Node: node,
		})
		run = nil
	}
	for _, p := range r.probes[node] {
		if p.time < from || p.time > to {
			continue
		}
		if bad(p) {
			run = append(run, p)
		} else {
			flush()
		}
	}
	flush()
}

func readinessAnswer(ready bool) string {
	if ready {
		return "200"
	}
	return "503"
}

func readinessUnready(p readinessProbe) bool { return !p.ready }

// checkAlwaysReady flags every 503 of the engine "none".
func (r *readinessRun) checkAlwaysReady() {
	for _, n := range r.nodes {
		r.flagRuns("unready-without-fault", n, 0, r.endOfHistory(), readinessUnready, "engine none is always ready")
	}
}

func (r *readinessRun) endOfHistory() int64 {
	var end int64
	for _, op := range r.in.History {
		end = max(end, op.Time)
	}
	return end
}

// checkCut flags a node that answered 200 while it was cut off.
func (r *readinessRun) checkCut() {
	delay := int64(r.peerTimeout + readinessCutSlack)
	for _, n := range r.nodes {
		for _, s := range readinessIsolation(r.in.Run.Engine, n, r.nodes, r.windows) {
			if s.stop-s.start <= delay {
				continue
			}
			why := fmt.Sprintf("cut off since %.1f s until %.1f s", float64(s.start)/1e9, float64(s.stop)/1e9)
			before := len(r.res.Anomalies["ready-while-cut"])
			r.flagRuns("ready-while-cut", n, s.start+delay, s.stop-int64(readinessEndSlack), func(p readinessProbe) bool { return p.ready }, why)
			if len(r.res.Anomalies["ready-while-cut"]) == before {
				r.res.Counts["cut-spans-ok"]++
			}
		}
	}
}

// checkAfterHeal flags a 503 after the heal's deadline, and times each
// node's return to 200.
func (r *readinessRun) checkAfterHeal() {
	healed, ok := presenceHealed(r.in.History, r.phases)
	if !ok {
		r.unknown = "no heal phase in the history, so recovery cannot be checked"
		return
	}
	deadline := healed + int64(2*r.peerTimeout+readinessHealSlack)
	var silent []string
	recovery := int64(-1)
	for _, n := range r.nodes {
		answered := false
		first := int64(-1)
		for _, p := range r.probes[n] {
			answered = answered || p.time >= deadline
			if p.ready && p.time >= healed && first < 0 {
				first = p.time - healed
			}
		}
		if !answered {
			silent = append(silent, n)
		}
		recovery = max(recovery, first)
		why := fmt.Sprintf("more than 2 x peer timeout + %s after the heal", readinessHealSlack)
		r.flagRuns("not-ready-after-heal", n, deadline, r.endOfHistory(), readinessUnready, why)
	}
	if recovery >= 0 {
		r.res.Stats["recovery-to-ready-ms"] = presenceMillis(recovery)
	}
	if len(silent) > 0 {
		r.unknown = fmt.Sprintf("no answered probe of %v after the heal deadline", silent)
	}
}

// checkWithoutFault flags a 503 in the main phase away from every fault.
func (r *readinessRun) checkWithoutFault() {
	from, ok := r.phases[history.PhaseMain]
	if !ok {
		return
	}
	to, ok := r.phases[history.PhaseHeal]
	if !ok {
		to = r.endOfHistory()
	}
	grace := int64(2 * r.peerTimeout)
	faultless := func(p readinessProbe) bool {
		return !p.ready && !InWindow(r.windows, p.time, 0, grace, r.nodes...)
	}
	for _, n := range r.nodes {
		r.flagRuns("unready-without-fault", n, from, to, faultless, "no fault was active in the 2 x peer timeout before")
	}
}

func (r *readinessRun) decide() {
	c := r.res.Counts
	bad := c["ready-while-cut"] + c["not-ready-after-heal"] + c["unready-without-fault"]
	switch {
	case bad > 0:
		r.res.Valid = Invalid
		r.res.Summary = fmt.Sprintf("%d spans ready while cut off, %d not ready after the heal, %d not ready without a fault",
			c["ready-while-cut"], c["not-ready-after-heal"], c["unready-without-fault"])
	case r.unknown != "":
		r.res.Valid, r.res.Summary = Unknown, r.unknown
	default:
		r.res.Valid = Valid
		r.res.Summary = fmt.Sprintf("all %d answered probes honest (%d spans cut off long enough to check)", c["probes"], c["cut-spans-ok"])
	}
}

// readinessSpan is a time span in nanoseconds.
type readinessSpan struct{ start, stop int64 }

// readinessIsolation returns the spans during which node was cut off from
// the rest of the cluster by the faults of ws, which may overlap.
func readinessIsolation(engine, node string, nodes []string, ws []Window) []readinessSpan {
	var bounds []int64
	for _, w := range ws {
		bounds = append(bounds, w.Start, w.Stop)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)

	// Between two consecutive bounds the set of active faults is the same.
	var spans []readinessSpan
	for i := 0; i+1 < len(bounds); i++ {
		var active []Window
		for _, w := range ws {
			if w.Start <= bounds[i] && w.Stop > bounds[i] {
				active = append(active, w)
			}
		}
		if !readinessIsolated(engine, node, nodes, active) {
			continue
		}
		if n := len(spans); n > 0 && spans[n-1].stop == bounds[i] {
			spans[n-1].stop = bounds[i+1]
		} else {
			spans = append(spans, readinessSpan{bounds[i], bounds[i+1]})
		}
	}
	return spans
}

// readinessIsolated reports whether the active faults cut node off: with
// the redis engine from Redis, with the mesh from every other node that is
// up. A node that is down itself returns nothing to a probe, so it does not
// count.
func readinessIsolated(engine, node string, nodes []string, active []Window) bool {
	if readinessDown(node, active) {
		return false
	}
	if engine == "redis" {
		for _, w := range active {
			if w.Fault.Kind == history.FaultRedisKill || w.Fault.Kind == history.FaultRedisPause || readinessCuts(w, node, topology.Redis) {
				return true
			}
		}
		return false
	}
	peers := 0
	for _, m := range nodes {
		if m == node {
			continue
		}
		peers++
		cut := readinessDown(m, active) || slices.ContainsFunc(active, func(w Window) bool { return readinessCuts(w, node, m) })
		if !cut {
			return false
		}
	}
	return peers > 0
}

// readinessDown reports whether an active kill or pause stopped node.
func readinessDown(node string, active []Window) bool {
	for _, w := range active {
		if (w.Fault.Kind == history.FaultKill || w.Fault.Kind == history.FaultPause) && slices.Contains(w.Fault.Nodes, node) {
			return true
		}
	}
	return false
}

// readinessCuts reports whether w is a partition that cuts the link between
// a and b.
func readinessCuts(w Window, a, b string) bool {
	if w.Fault.Kind != history.FaultPartition {
		return false
	}
	for _, l := range w.Fault.Links {
		if (l[0] == a && l[1] == b) || (l[0] == b && l[1] == a) {
			return true
		}
	}
	return false
}
