package checker

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/wscluster/wscluster/history"
)

// Ghosts returns the checker of the contract's guarantee 7, no ghosts. The
// guarantee has two rules, and the checker checks both.
//
// Dead nodes. The checker looks at every node that was killed, or paused
// for longer than the peer timeout, and at the presence members whose
// connection was on that node when the fault began. It times how long each
// member stayed in the view of every other node that no other fault touched
// meanwhile: until a client on that node received the member's
// presence.leave, or read a roster without it.
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
// Silent clients. A churn worker makes its connection silent on purpose,
// recorded as an FDrop whose ok has Error "silent". Its proxy stops
// forwarding and keeps every socket open, so only the node's pong timeout
// can end the connection. Every member that the connection held must leave
// the view of every node, its own node included, within 2 x ping interval
// + 1 s of that ok. The evidence and rules are those above, and the
// anomalies are "slow-silent-purge" and "silent-ghost".
//
// The two intervals are the phase of the node's ping timer: the node pings
// each client once per interval and closes it when no pong comes within one
// more interval, so a silence that begins just after a ping lasts up to two
// intervals. The extra second covers the observers' granularity again. A
// node other than the silent client's is not observed while a fault touches
// either of them, up to 2 x peer timeout after the fault stops, because the
// leave may then come late for other reasons. The silent client's own node
// purges its own clients whatever its links do, so it is skipped only while
// it is killed or paused, which stops its ping timer.
func Ghosts() Checker { return ghostsChecker{} }

type ghostsChecker struct{}

func (ghostsChecker) Name() string { return "ghosts" }

// ghostVictim is a presence member whose connection was on a node that died,
// or went silent.
type ghostVictim struct {
	channel, member string
	conn            presenceConnKey
	// node is the node that died, or the silent connection's node.
	node string
}

// ghostRun holds the state of one Check.
type ghostRun struct {
	idx *presenceIndex
	// limit bounds the purge of a dead node's members, silentLimit the
	// purge of a silent client's members.
	limit, silentLimit int64
	res                Result
	purges             []float64
	silentPurges       []float64
}

// ghostKinds names the counts, anomalies and samples of one of the two
// rules.
type ghostKinds struct {
	observed, unobserved, slow, ghost string
	purges                            *[]float64
}

func (ghostsChecker) Check(in Input) Result {
	heartbeat, peerTimeout, ping := presenceTimings(in.Run)
	g := &ghostRun{
		idx:         presenceIndexHistory(in.History),
		limit:       int64(peerTimeout + heartbeat + time.Second),
		silentLimit: int64(2*ping + time.Second),
		res:         Result{Counts: map[string]int{}, Stats: map[string]float64{}},
	}
	for _, kind := range []string{
		"deaths", "victims", "observations", "unobserved", "ghost", "slow-purge",
		"silent-clients", "silent-members", "silent-observations", "silent-unobserved", "silent-excluded",
		"silent-ghost", "slow-silent-purge",
	} {
		g.res.Counts[kind] = 0
	}
	nodes := presenceNodes(in.Run, in.History)
	ws := Windows(in.History)
	g.checkDeaths(ws, nodes)
	g.checkSilent(ws, nodes, int64(2*peerTimeout))
	g.decide(time.Duration(g.limit), time.Duration(g.silentLimit))
	return g.res
}

// checkDeaths observes the members of every node that died.
func (g *ghostRun) checkDeaths(ws []Window, nodes []string) {
	kinds := ghostKinds{observed: "observations", unobserved: "unobserved", slow: "slow-purge", ghost: "ghost", purges: &g.purges}
	for i, w := range ws {
		dead, ok := ghostDeadNode(w, time.Duration(g.limit), nodes)
		if !ok {
			continue
		}
		g.res.Counts["deaths"]++
		observers := ghostObservers(ws, i, dead, nodes)
		for _, v := range ghostVictims(g.idx, dead, w.Start) {
			g.res.Counts["victims"]++
			horizon := g.idx.end
			if w.Fault.Kind == history.FaultPause {
				horizon = w.Stop
			}
			horizon = g.rejoinHorizon(v, w.Start, horizon)
			what := fmt.Sprintf("member %s of %s, connected to %s when the %s (%s) began,", v.member, v.channel, v.node, w.Fault.Kind, w.Fault.ID)
			for _, y := range observers {
				g.observe(v, y, w.Start, horizon, g.limit, what, kinds)
			}
		}
	}
}

// checkSilent observes the members of every connection that went silent
// on every node that no fault disturbed. grace extends each fault window.
func (g *ghostRun) checkSilent(ws []Window, nodes []string, grace int64) {
	kinds := ghostKinds{observed: "silent-observations", unobserved: "silent-unobserved", slow: "slow-silent-purge", ghost: "silent-ghost", purges: &g.silentPurges}
	for i := range g.idx.ops {
		op := &g.idx.ops[i]
		if op.Type != history.Ok || op.F != history.FDrop || op.Error != silentDropError {
			continue
		}
		g.res.Counts["silent-clients"]++
		conn := presenceConnKey{op.Process, op.Epoch}
		for _, v := range silentVictims(g.idx, conn, op.Node) {
			g.res.Counts["silent-members"]++
			horizon := g.rejoinHorizon(v, op.Time, g.idx.end)
			what := fmt.Sprintf("member %s of %s, whose connection %s on %s went silent,", v.member, v.channel, conn, v.node)
			for _, y := range nodes {
				if silentDisturbed(ws, v.node, y, op.Time, op.Time+g.silentLimit, grace) {
					g.res.Counts["silent-excluded"]++
					continue
				}
				g.observe(v, y, op.Time, horizon, g.silentLimit, what, kinds)
			}
		}
	}
}

// silentDropError is the Error of the FDrop ok of a connection that a
// workload made silent on purpose.
const silentDropError = "silent"

// silentVictims returns the members that connection conn on node held: its
// joins that completed ok, without a leave that may have taken effect.
func silentVictims(idx *presenceIndex, conn presenceConnKey, node string) []ghostVictim {
	var victims []ghostVictim
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.f != history.FJoin || c.outcome != history.Ok || c.conn != conn || idx.leaveAfter(i) != nil {
			continue
		}
		victims = append(victims, ghostVictim{channel: c.channel, member: c.member, conn: conn, node: node})
	}
	return victims
}

// silentDisturbed reports whether a fault may have delayed the view of node
// y of a member whose connection on node x went silent, between from and
// to: a fault that touched x or y, extended by grace after its stop. For y
// equal to x only a kill or pause of x counts.
func silentDisturbed(ws []Window, x, y string, from, to, grace int64) bool {
	for _, w := range ws {
		if w.Start > to || w.Stop+grace < from {
			continue
		}
		if y != x && (w.Touches(x) || w.Touches(y)) {
			return true
		}
		if y == x && (w.Fault.Kind == history.FaultKill || w.Fault.Kind == history.FaultPause) && w.Touches(x) {
			return true
		}
	}
	return false
}

// ghostDeadNode returns the node that w kills, or pauses for longer than
// limit, the purge bound: a shorter pause may end before its members are
// due to be purged.
func ghostDeadNode(w Window, limit time.Duration, nodes []string) (string, bool) {
	if len(w.Fault.Nodes) != 1 || !slices.Contains(nodes, w.Fault.Nodes[0]) {
		return "", false
	}
	switch w.Fault.Kind {
	case history.FaultKill:
		return w.Fault.Nodes[0], true
	case history.FaultPause:
		return w.Fault.Nodes[0], w.Stop-w.Start > int64(limit)
	}
	return "", false
}

// ghostObservers returns the nodes other than dead that no other kill or
// pause stopped during ws[self]. A partition or a Redis fault does not spare
// an observer: a node that cannot hear the dead node still declares it down
// after the peer timeout of silence, so it must purge in time all the same.
func ghostObservers(ws []Window, self int, dead string, nodes []string) []string {
	w := ws[self]
	var observers []string
	for _, y := range nodes {
		if y == dead {
			continue
		}
		touched := false
		for j, o := range ws {
			stops := o.Fault.Kind == history.FaultKill || o.Fault.Kind == history.FaultPause
			if j != self && stops && o.Start <= w.Stop && o.Stop >= w.Start && o.Touches(y) {
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

// observe times how long v stayed in the view of node y after start, until
// horizon, against limit. what describes v for the anomalies, which kinds
// names.
func (g *ghostRun) observe(v ghostVictim, y string, start, horizon, limit int64, what string, kinds ghostKinds) {
	ev := g.leaveEvent(v, y, start, horizon)
	g.scanReads(&ev, v, y, start, horizon)

	late := ev.lastSeen >= 0 && ev.lastSeen-start > limit
	switch {
	case ev.gone >= 0:
		g.res.Counts[kinds.observed]++
		purge := ev.gone - start
		*kinds.purges = append(*kinds.purges, presenceMillis(purge))
		if !late && !(ev.byEvent && purge > limit) {
			return
		}
		g.res.AddAnomaly(kinds.slow, Anomaly{
			Description: fmt.Sprintf("%s left the view of %s only %.0f ms later, more than the %.0f ms limit", what, y, presenceMillis(purge), presenceMillis(limit)),
			Time:        ev.gone, Ops: ghostOps(ev), Node: y, Channel: v.channel,
		})
	case late:
		g.res.Counts[kinds.observed]++
		g.res.AddAnomaly(kinds.ghost, Anomaly{
			Description: fmt.Sprintf("%s was still in the view of %s %.0f ms later and never left it", what, y, presenceMillis(ev.lastSeen-start)),
			Time:        ev.lastSeen, Ops: ghostOps(ev), Node: y, Channel: v.channel,
		})
	default:
		g.res.Counts[kinds.unobserved]++
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

// rejoinHorizon returns horizon, or earlier the invoke of a join of v's
// member id by another connection after from, which ends the observation
// of v.
func (g *ghostRun) rejoinHorizon(v ghostVictim, from, horizon int64) int64 {
	for i := range g.idx.calls {
		c := &g.idx.calls[i]
		if c.f == history.FJoin && c.member == v.member && c.channel == v.channel && c.conn != v.conn && c.call >= from {
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
func (g *ghostRun) decide(limit, silentLimit time.Duration) {
	r := &g.res
	for name, samples := range map[string][]float64{"ghost-purge": g.purges, "silent-purge": g.silentPurges} {
		if len(samples) == 0 {
			continue
		}
		slices.Sort(samples)
		r.Stats[name+"-p50-ms"] = presenceQuantile(samples, 0.5)
		r.Stats[name+"-p100-ms"] = presenceQuantile(samples, 1)
	}
	deaths, deathsSummary := g.decideDeaths(limit)
	silent, silentSummary := g.decideSilent(silentLimit)
	r.Valid = Combine(deaths, silent)
	r.Summary = deathsSummary + "; " + silentSummary
}

// decideDeaths judges the rule of dead nodes.
func (g *ghostRun) decideDeaths(limit time.Duration) (Verdict, string) {
	c := g.res.Counts
	switch {
	case c["deaths"] == 0:
		return Valid, "no node died"
	case c["ghost"]+c["slow-purge"] > 0:
		return Invalid, fmt.Sprintf("%d ghosts and %d slow purges (limit %s) in %d observations of %d members of dead nodes",
			c["ghost"], c["slow-purge"], limit, c["observations"], c["victims"])
	case c["victims"] == 0:
		return Valid, fmt.Sprintf("node deaths: %d, none with a presence member to purge", c["deaths"])
	case c["observations"] == 0:
		return Unknown, fmt.Sprintf("%d members of dead nodes, but no other node's clients saw them purged or kept", c["victims"])
	default:
		return Valid, fmt.Sprintf("%d observations of %d members of dead nodes, all purged within %s (slowest %.0f ms)",
			c["observations"], c["victims"], limit, g.res.Stats["ghost-purge-p100-ms"])
	}
}

// decideSilent judges the rule of silent clients. Members observed on no
// node make it Unknown only when some node was free of faults to observe
// them.
func (g *ghostRun) decideSilent(limit time.Duration) (Verdict, string) {
	c := g.res.Counts
	switch {
	case c["silent-clients"] == 0:
		return Valid, "no silent client"
	case c["silent-ghost"]+c["slow-silent-purge"] > 0:
		return Invalid, fmt.Sprintf("%d silent ghosts and %d slow silent purges (limit %s) in %d observations of %d members of %d silent clients",
			c["silent-ghost"], c["slow-silent-purge"], limit, c["silent-observations"], c["silent-members"], c["silent-clients"])
	case c["silent-members"] == 0:
		return Valid, fmt.Sprintf("silent clients: %d, none with a presence member to purge", c["silent-clients"])
	case c["silent-observations"] == 0 && c["silent-unobserved"] > 0:
		return Unknown, fmt.Sprintf("%d members of %d silent clients, but no node's clients saw them purged or kept", c["silent-members"], c["silent-clients"])
	case c["silent-observations"] == 0:
		return Valid, fmt.Sprintf("%d members of %d silent clients, every node disturbed by a fault meanwhile", c["silent-members"], c["silent-clients"])
	default:
		return Valid, fmt.Sprintf("%d observations of %d members of %d silent clients, all purged within %s (slowest %.0f ms)",
			c["silent-observations"], c["silent-members"], c["silent-clients"], limit, g.res.Stats["silent-purge-p100-ms"])
	}
}
