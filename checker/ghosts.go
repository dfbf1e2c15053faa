package checker

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/wscluster/wscluster/history"
)

// Ghosts returns the checker of the contract's guarantee 7, no ghosts. It
// looks at every node that was killed, or paused for longer than the peer
// timeout, and at the presence members whose connection was on that node
// when the fault began. It times how long each member stayed in the view of
// every other node that no other fault touched meanwhile: until a client on
// that node received the member's presence.leave, or read a roster without
// it.
//
// The limit is peer timeout + heartbeat interval + 1 s. The heartbeat
// interval covers the failure detector's probing granularity: the dead node
// may have sent its last heartbeat up to one interval before the fault,
// and the detector checks four times per interval. The extra second covers
// the observers' granularity: they read a roster every few hundred
// milliseconds, and a presence.leave takes a moment to reach them.
//
// A member still listed in a read invoked after the limit is a "slow-purge"
// when it disappears later. It is a "ghost" when it never disappears before
// the fault stops (a pause) or before the history ends (a kill, because a
// restart does not bring the dead connection back). A read that first
// misses the member only bounds its purge time from above, so it alone never
// proves a slow purge. A member id that another connection joins again
// ends the observation, because that member is no ghost.
//
// NOTE: the contract's second rule, a silent client gone within
// 2 x ping interval, is not checked: no workload makes a client go silent
// while its connection stays open.
func Ghosts() Checker { return ghostsChecker{} }

type ghostsChecker struct{}

func (ghostsChecker) Name() string { return "ghosts" }

// ghostVictim is a presence member whose connection was on a node that died.
type ghostVictim struct {
	channel, member string
	conn            presenceConnKey
	// node is the node that died.
	node string
}

// ghostRun holds the state of one Check.
type ghostRun struct {
	idx    *presenceIndex
	limit  int64
	res    Result
	purges []float64
}

func (ghostsChecker) Check(in Input) Result {
	heartbeat, peerTimeout, _ := presenceTimings(in.Run)
	g := &ghostRun{
		idx:   presenceIndexHistory(in.History),
		limit: int64(peerTimeout + heartbeat + time.Second),
		res:   Result{Counts: map[string]int{}, Stats: map[string]float64{}},
	}
	for _, kind := range []string{"deaths", "victims", "observations", "unobserved", "ghost", "slow-purge"} {
		g.res.Counts[kind] = 0
	}
	nodes := presenceNodes(in.Run, in.History)
	ws := Windows(in.History)
	for i, w := range ws {
		dead, ok := ghostDeadNode(w, peerTimeout, nodes)
		if !ok {
			continue
		}
		g.res.Counts["deaths"]++
		observers := ghostObservers(ws, i, dead, nodes)
		for _, v := range ghostVictims(g.idx, dead, w.Start) {
			g.res.Counts["victims"]++
			for _, y := range observers {
				g.observe(w, v, y)
			}
		}
	}
	g.decide(time.Duration(g.limit))
	return g.res
}

// ghostDeadNode returns the node that w kills, or pauses for longer than the
// peer timeout.
func ghostDeadNode(w Window, peerTimeout time.Duration, nodes []string) (string, bool) {
	if len(w.Fault.Nodes) != 1 || !slices.Contains(nodes, w.Fault.Nodes[0]) {
		return "", false
	}
	switch w.Fault.Kind {
	case "kill":
		return w.Fault.Nodes[0], true
	case "pause":
		return w.Fault.Nodes[0], w.Stop-w.Start > int64(peerTimeout)
	}
	return "", false
}

// ghostObservers returns the nodes other than dead that no fault but
// ws[self] touched during ws[self].
func ghostObservers(ws []Window, self int, dead string, nodes []string) []string {
	w := ws[self]
	var observers []string
	for _, y := range nodes {
		if y == dead {
			continue
		}
		touched := false
		for j, o := range ws {
			if j != self && o.Start <= w.Stop && o.Stop >= w.Start && o.Touches(y) {
				touched = true
				break
			}
		}
		if !touched {
			observers = append(observers, y)
		}
	}
	return observers
}

// ghostVictims returns the members whose connection was on node at time t:
// joined ok before t on a connection still open, and not leaving.
func ghostVictims(idx *presenceIndex, node string, t int64) []ghostVictim {
	var victims []ghostVictim
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.f != history.FJoin || c.outcome != history.Ok || c.ret >= t {
			continue
		}
		conn := idx.conn(c)
		if conn.node != node || (conn.closed >= 0 && conn.closed < t) {
			continue
		}
		if l := idx.leaveAfter(i); l != nil && l.call < t {
			continue
		}
		victims = append(victims, ghostVictim{channel: c.channel, member: c.member, conn: c.conn, node: node})
	}
	return victims
}

// ghostEvidence is the clients' record of a victim on one node.
type ghostEvidence struct {
	// gone is when the victim was first seen gone, or -1: the time a
	// presence.leave arrived, or the return of a roster read without it.
	gone    int64
	byEvent bool
	goneOp  int
	// lastSeen is the invoke time of the last read before gone that still
	// listed the victim, or -1.
	lastSeen   int64
	lastSeenOp int
}

// observe times how long v stayed in the view of node y after w began.
func (g *ghostRun) observe(w Window, v ghostVictim, y string) {
	horizon := g.horizon(w, v)
	ev := g.leaveEvent(v, y, w.Start, horizon)
	g.scanReads(&ev, v, y, w.Start, horizon)

	what := fmt.Sprintf("member %s of %s, connected to %s when the %s (%s) began,", v.member, v.channel, v.node, w.Fault.Kind, w.Fault.ID)
	switch {
	case ev.gone >= 0:
		g.res.Counts["observations"]++
		purge := ev.gone - w.Start
		g.purges = append(g.purges, presenceMillis(purge))
		late := ev.lastSeen >= 0 && ev.lastSeen-w.Start > g.limit
		if !late && !(ev.byEvent && purge > g.limit) {
			return
		}
		g.res.AddAnomaly("slow-purge", Anomaly{
			Description: fmt.Sprintf("%s left the view of %s only %.0f ms later, more than the %.0f ms limit", what, y, presenceMillis(purge), presenceMillis(g.limit)),
			Time:        ev.gone, Ops: ghostOps(ev), Node: y, Channel: v.channel,
		})
	case ev.lastSeen >= 0 && ev.lastSeen-w.Start > g.limit:
		g.res.Counts["observations"]++
		g.res.AddAnomaly("ghost", Anomaly{
			Description: fmt.Sprintf("%s was still in the view of %s %.0f ms later and never left it", what, y, presenceMillis(ev.lastSeen-w.Start)),
			Time:        ev.lastSeen, Ops: ghostOps(ev), Node: y, Channel: v.channel,
		})
	default:
		g.res.Counts["unobserved"]++
	}
}

func ghostOps(ev ghostEvidence) []int {
	var ops []int
	if ev.lastSeen >= 0 {
		ops = append(ops, ev.lastSeenOp)
	}
	if ev.gone >= 0 {
		ops = append(ops, ev.goneOp)
	}
	return ops
}

// horizon returns the end of the observation of v: the end of a pause, when
// the member may come back, or the end of the history for a kill. A later
// join of the same member id by another connection ends it earlier.
func (g *ghostRun) horizon(w Window, v ghostVictim) int64 {
	horizon := g.idx.end
	if w.Fault.Kind == "pause" {
		horizon = w.Stop
	}
	for i := range g.idx.calls {
		c := &g.idx.calls[i]
		if c.f == history.FJoin && c.member == v.member && c.channel == v.channel && c.conn != v.conn && c.call >= w.Start {
			horizon = min(horizon, c.call)
		}
	}
	return horizon
}

// leaveEvent returns the evidence of the first presence.leave of v that a
// client on node y received between from and to.
func (g *ghostRun) leaveEvent(v ghostVictim, y string, from, to int64) ghostEvidence {
	ev := ghostEvidence{gone: -1, lastSeen: -1}
	for i := range g.idx.ops {
		op := &g.idx.ops[i]
		if op.Type != history.Event || op.F != history.FPresenceLeave || op.Node != y ||
			op.Channel != v.channel || op.Member != v.member || op.Time < from || op.Time > to {
			continue
		}
		if ev.gone < 0 || op.Time < ev.gone {
			ev.gone, ev.byEvent, ev.goneOp = op.Time, true, op.Index
		}
	}
	return ev
}

// scanReads adds the evidence of the roster reads of v's channel on node y
// invoked between from and to: the last one that listed v with its
// connection on the dead node, and the first one that did not.
func (g *ghostRun) scanReads(ev *ghostEvidence, v ghostVictim, y string, from, to int64) {
	var reads []*presenceCall
	for i := range g.idx.calls {
		c := &g.idx.calls[i]
		if c.f == history.FMembers && c.outcome == history.Ok && c.node == y && c.channel == v.channel && c.call >= from && c.call <= to {
			reads = append(reads, c)
		}
	}
	slices.SortFunc(reads, func(a, b *presenceCall) int { return cmp.Compare(a.ret, b.ret) })

	for _, r := range reads {
		if ev.gone >= 0 && r.ret >= ev.gone {
			return
		}
		if !ghostListed(r.members, v) {
			ev.gone, ev.byEvent, ev.goneOp = r.ret, false, r.done
			return
		}
		if r.call > ev.lastSeen {
			ev.lastSeen, ev.lastSeenOp = r.call, r.done
		}
	}
}

// ghostListed reports whether roster lists v with a connection on its dead
// node.
func ghostListed(roster []history.Member, v ghostVictim) bool {
	for _, m := range roster {
		if m.Member == v.member && presenceOnNode(m, v.node) {
			return true
		}
	}
	return false
}

// decide sets the verdict, the summary and the purge time stats.
func (g *ghostRun) decide(limit time.Duration) {
	r := &g.res
	slices.Sort(g.purges)
	if len(g.purges) > 0 {
		r.Stats["ghost-purge-p50-ms"] = presenceQuantile(g.purges, 0.5)
		r.Stats["ghost-purge-p100-ms"] = presenceQuantile(g.purges, 1)
	}
	c := r.Counts
	switch {
	case c["deaths"] == 0:
		r.Valid, r.Summary = Valid, "no node died"
	case c["ghost"]+c["slow-purge"] > 0:
		r.Valid = Invalid
		r.Summary = fmt.Sprintf("%d ghosts and %d slow purges (limit %s) in %d observations of %d members of dead nodes",
			c["ghost"], c["slow-purge"], limit, c["observations"], c["victims"])
	case c["victims"] == 0:
		r.Valid = Valid
		r.Summary = fmt.Sprintf("node deaths: %d, none with a presence member to purge", c["deaths"])
	case c["observations"] == 0:
		r.Valid = Unknown
		r.Summary = fmt.Sprintf("%d members of dead nodes, but no other node's clients saw them purged or kept", c["victims"])
	default:
		r.Valid = Valid
		r.Summary = fmt.Sprintf("%d observations of %d members of dead nodes, all purged within %s (slowest %.0f ms)",
			c["observations"], c["victims"], limit, r.Stats["ghost-purge-p100-ms"])
	}
}
