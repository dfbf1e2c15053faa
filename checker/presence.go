package checker

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// presenceConnKey identifies one client connection: epoch epoch of process.
type presenceConnKey struct{ process, epoch int }

func (k presenceConnKey) String() string {
	return fmt.Sprintf("p%d.e%d", k.process, k.epoch)
}

// presenceConn is one client connection as the history shows it.
type presenceConn struct {
	key  presenceConnKey
	node string
	// opened is the time of the FConnect ok, or of the connection's first
	// entry when the history has no FConnect for it.
	opened int64
	// closed is the time the connection ended: the FDrop invoke or the
	// FDisconnect event. It is -1 for a connection that stayed up until the
	// history ends.
	closed      int64
	closedIndex int
	dropped     bool
	// lastOkCall is the invoke time of the last operation on the
	// connection that completed ok, or -1. The server handled that request
	// while the connection was open, so it closed the connection later.
	lastOkCall int64
}

// presenceCall is one client operation: an invoke and its completion.
type presenceCall struct {
	f       string
	conn    presenceConnKey
	node    string
	channel string
	member  string
	// invoke and done are history indexes. done is -1 when the history
	// ends before the completion, which counts as info.
	invoke, done int
	// call and ret are the invoke and completion times. ret is the end of
	// the history when there is no completion.
	call, ret int64
	outcome   history.Type
	members   []history.Member
	// value is the invoke's Value: a publish's data.
	value json.RawMessage
	// leave, for a join, is the index in presenceIndex.calls of the first
	// leave of the same connection and channel that did not fail, before
	// the connection's next join of the channel. It is -1 when there is none.
	leave int
}

// presenceIndex is a history indexed for the presence checkers.
type presenceIndex struct {
	ops    []history.Op
	phases map[string]int64
	// end is the latest time in the history.
	end   int64
	conns map[presenceConnKey]*presenceConn
	// calls are the client operations in invoke order.
	calls []presenceCall
}

// presenceIndexHistory pairs every client operation of ops with its
// completion and collects the connections.
func presenceIndexHistory(ops []history.Op) *presenceIndex {
	idx := &presenceIndex{ops: ops, phases: PhaseTimes(ops), conns: map[presenceConnKey]*presenceConn{}}
	for _, op := range ops {
		idx.end = max(idx.end, op.Time)
	}

	// Pair by process and F, so that a process with operations of
	// different kinds in flight still pairs correctly, and within those by
	// value (see matchPending).
	type pendingKey struct {
		process int
		f       string
	}
	pending := map[pendingKey][]pendingOp{}
	for i := range ops {
		op := &ops[i]
		if op.Process < 0 {
			continue
		}
		idx.noteConn(op)
		switch op.Type {
		case history.Invoke:
			k := pendingKey{op.Process, op.F}
			pending[k] = append(pending[k], newPendingOp(len(idx.calls), op))
			idx.calls = append(idx.calls, presenceNewCall(op))
		case history.Ok, history.Fail, history.Info:
			k := pendingKey{op.Process, op.F}
			if q := pending[k]; len(q) > 0 {
				pos := matchPending(q, op)
				idx.complete(&idx.calls[q[pos].call], op)
				pending[k] = slices.Delete(q, pos, pos+1)
			}
		}
	}
	idx.fillLeaveMembers()
	return idx
}

func presenceNewCall(op *history.Op) presenceCall {
	return presenceCall{
		f:       op.F,
		conn:    presenceConnKey{op.Process, op.Epoch},
		node:    op.Node,
		channel: op.Channel,
		member:  op.Member,
		value:   op.Value,
		invoke:  op.Index,
		done:    -1,
		call:    op.Time,
		ret:     -1,
		outcome: history.Info,
		leave:   -1,
	}
}

func (idx *presenceIndex) complete(c *presenceCall, op *history.Op) {
	c.done, c.ret, c.outcome = op.Index, op.Time, op.Type
	c.members = op.Members
	if c.member == "" {
		c.member = op.Member
	}
	if op.Type != history.Ok || op.F == history.FConnect {
		return
	}
	if conn := idx.conns[c.conn]; conn != nil {
		conn.lastOkCall = max(conn.lastOkCall, c.call)
	}
}

// noteConn records the connections that op opens or closes.
func (idx *presenceIndex) noteConn(op *history.Op) {
	key := presenceConnKey{op.Process, op.Epoch}
	conn := idx.conns[key]
	if op.F == history.FConnect && op.Type == history.Ok {
		conn = &presenceConn{key: key, node: op.Node, opened: op.Time, closed: -1, lastOkCall: -1}
		idx.conns[key] = conn
		return
	}
	if op.F == history.FConnect || op.Epoch == 0 {
		return
	}
	if conn == nil {
		conn = &presenceConn{key: key, node: op.Node, opened: op.Time, closed: -1, lastOkCall: -1}
		idx.conns[key] = conn
	}
	ends := (op.F == history.FDisconnect && op.Type == history.Event) ||
		(op.F == history.FDrop && op.Type == history.Invoke)
	if ends && conn.closed < 0 {
		conn.closed, conn.closedIndex = op.Time, op.Index
		conn.dropped = op.F == history.FDrop
	}
}

// fillLeaveMembers links every join to the leave that ends it and gives
// every leave without a member the member that its connection joined the
// channel as. A call without a completion gets the history's end as its
// return time.
func (idx *presenceIndex) fillLeaveMembers() {
	lastJoin := map[presenceJoinKey]int{}
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.ret < 0 {
			c.ret = idx.end
		}
		k := presenceJoinKey{c.conn, c.channel}
		switch {
		case c.f == history.FJoin && c.outcome != history.Fail:
			lastJoin[k] = i
		case c.f == history.FLeave && c.outcome != history.Fail:
			j, ok := lastJoin[k]
			if !ok {
				continue
			}
			if c.member == "" {
				c.member = idx.calls[j].member
			}
			if idx.calls[j].leave < 0 {
				idx.calls[j].leave = i
			}
		}
	}
}

// presenceJoinKey is one connection's membership of one channel.
type presenceJoinKey struct {
	conn    presenceConnKey
	channel string
}

// conn returns the connection of c, which noteConn always created.
func (idx *presenceIndex) conn(c *presenceCall) *presenceConn {
	return idx.conns[c.conn]
}

// leaveAfter returns the leave that ends the join idx.calls[join], or nil.
func (idx *presenceIndex) leaveAfter(join int) *presenceCall {
	if l := idx.calls[join].leave; l >= 0 {
		return &idx.calls[l]
	}
	return nil
}

// presenceMemberIDs returns the member ids of a roster.
func presenceMemberIDs(roster []history.Member) map[string]bool {
	ids := map[string]bool{}
	for _, m := range roster {
		ids[m.Member] = true
	}
	return ids
}

func presenceOnNode(m history.Member, node string) bool {
	return slices.ContainsFunc(m.Connections, func(c history.Connection) bool { return c.Node == node })
}

// presenceSorted returns the keys of a set in order.
func presenceSorted(set map[string]bool) []string {
	return slices.Sorted(maps.Keys(set))
}

// presenceNodes returns the run's nodes, or the nodes the history names
// when the run description lists none.
func presenceNodes(run Run, ops []history.Op) []string {
	if len(run.Nodes) > 0 {
		return run.Nodes
	}
	set := map[string]bool{}
	for _, op := range ops {
		if op.Node != "" && op.Node != topology.Redis {
			set[op.Node] = true
		}
	}
	return presenceSorted(set)
}

// presenceTimings returns the run's heartbeat interval, peer timeout and
// ping interval, with the node's defaults for the ones left at zero.
func presenceTimings(run Run) (heartbeat, peerTimeout, ping time.Duration) {
	c := topology.Config{
		HeartbeatInterval: run.HeartbeatInterval,
		PeerTimeout:       run.PeerTimeout,
		PingInterval:      run.PingInterval,
	}.WithDefaults()
	return c.HeartbeatInterval, c.PeerTimeout, c.PingInterval
}

// presenceHealed returns when the final heal was complete: the start of
// the recovery phase, which follows the heal phase once every fault's Stop
// returned. Without a recovery phase it is the last fault stop at or after
// the heal phase start, or that start. ok is false without a heal phase.
func presenceHealed(ops []history.Op, phases map[string]int64) (healed int64, ok bool) {
	if t, found := phases[history.PhaseRecovery]; found {
		return t, true
	}
	start, found := phases[history.PhaseHeal]
	if !found {
		return 0, false
	}
	healed = start
	for _, op := range ops {
		if op.Type == history.Nemesis && op.F == history.FFaultStop && op.Time >= start {
			healed = max(healed, op.Time)
		}
	}
	return healed, true
}

// presenceQuantile returns the q-quantile of sorted by the nearest-rank
// method, or 0 for no samples.
func presenceQuantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted))-1e-9)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func presenceMillis(ns int64) float64 {
	return float64(ns) / 1e6
}

// presenceDiff formats the members that a roster misses and the ones it
// lists besides, e.g. "missing [m1.1.1], extra [m2.1.3]".
func presenceDiff(missing, extra []string) string {
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("missing %v", missing))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("extra %v", extra))
	}
	return strings.Join(parts, ", ")
}

// Convergence returns the checker of the contract's guarantee 6, roster
// convergence. The ground truth of a channel at the start of the final
// phase holds every member whose join completed ok on a connection that
// neither left the channel nor ended. A member whose join or leave has an
// unknown outcome (info), or whose connection ended during the final phase,
// may be listed or not. Every final read of every node must equal the
// truth ("final-mismatch"). The stat "convergence-ms" runs from the end of
// the heal phase to the first roster read after which every read of every
// node equals the truth. A read invoked more than 2 x peer timeout after
// the heal that still differs is a "slow-convergence".
func Convergence() Checker { return convergenceChecker{} }

type convergenceChecker struct{}

func (convergenceChecker) Name() string { return "roster-convergence" }

func (convergenceChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{}, Stats: map[string]float64{}}
	for _, kind := range []string{"final-reads", "final-read-failed", "final-mismatch", "slow-convergence"} {
		res.Counts[kind] = 0
	}
	idx := presenceIndexHistory(in.History)
	final, ok := idx.phases[history.PhaseFinal]
	if !ok {
		res.Valid, res.Summary = Unknown, "no final phase in the history, so there are no final roster reads"
		return res
	}
	truth := presenceTruthAt(idx, final)
	for _, tr := range truth {
		res.Counts["truth-members"] += len(tr.sure)
		res.Counts["uncertain-members"] += len(tr.uncertain)
	}

	// Compare every final read with the truth, and note which node and
	// channel pairs have one.
	covered := convergenceCheckFinal(idx, truth, final, &res)
	if res.Counts["final-reads"] == 0 {
		res.Valid, res.Summary = Unknown, "no final roster read completed"
		return res
	}
	missing := convergenceMissingReads(presenceNodes(in.Run, in.History), truth, covered)
	res.Counts["final-read-missing"] = len(missing)

	// Time the convergence after the heal.
	_, peerTimeout, _ := presenceTimings(in.Run)
	convergenceTime(idx, peerTimeout, &res)

	convergenceDecide(&res, missing, 2*peerTimeout)
	return res
}

// convergenceDecide sets the verdict and the summary.
func convergenceDecide(res *Result, missing []string, limit time.Duration) {
	c := res.Counts
	took := "not measured"
	if ms, ok := res.Stats["convergence-ms"]; ok {
		took = fmt.Sprintf("%.0f ms", ms)
	}
	switch {
	case c["final-mismatch"]+c["slow-convergence"] > 0:
		res.Valid = Invalid
		exceeded := ""
		if c["slow-convergence"] > 0 {
			exceeded = ", exceeded"
		}
		res.Summary = fmt.Sprintf("%d of %d final roster reads differ from the truth; convergence %s (limit %s%s)",
			c["final-mismatch"], c["final-reads"], took, limit, exceeded)
	case len(missing) > 0:
		res.Valid = Unknown
		res.Summary = fmt.Sprintf("no final roster read of %s, so their convergence is not known", strings.Join(missing, ", "))
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("all %d final roster reads equal the truth (%d members, %d uncertain); convergence %s",
			c["final-reads"], c["truth-members"], c["uncertain-members"], took)
	}
}

// presenceTruth is the roster that a channel must show at a given time.
type presenceTruth struct {
	// sure are the members that must be listed. uncertain are the members
	// that may be listed or not.
	sure, uncertain map[string]bool
}

// diff returns the sure members that read lacks and the members it lists
// that are neither sure nor uncertain. A nil truth is an empty roster.
func (tr *presenceTruth) diff(read map[string]bool) (missing, extra []string) {
	if tr == nil {
		tr = &presenceTruth{}
	}
	for m := range tr.sure {
		if !read[m] {
			missing = append(missing, m)
		}
	}
	for m := range read {
		if !tr.sure[m] && !tr.uncertain[m] {
			extra = append(extra, m)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

// presenceMembership is the state of a join's member in the roster at a
// given time.
type presenceMembership int

const (
	presenceGone presenceMembership = iota
	presenceSure
	presenceUncertain
)

// presenceTruthAt returns the ground truth of every channel that anybody
// joined, at time t.
func presenceTruthAt(idx *presenceIndex, t int64) map[string]*presenceTruth {
	truth := map[string]*presenceTruth{}
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.f != history.FJoin || c.outcome == history.Fail {
			continue
		}
		tr := truth[c.channel]
		if tr == nil {
			tr = &presenceTruth{sure: map[string]bool{}, uncertain: map[string]bool{}}
			truth[c.channel] = tr
		}
		switch presenceJoinAt(idx, i, t) {
		case presenceSure:
			tr.sure[c.member] = true
		case presenceUncertain:
			tr.uncertain[c.member] = true
		}
	}

	// A member id that one connection holds for sure is sure, whatever
	// another connection with the same id did.
	for _, tr := range truth {
		for m := range tr.sure {
			delete(tr.uncertain, m)
		}
	}
	return truth
}

// presenceJoinAt returns whether the join idx.calls[i] still holds its
// member in the roster at time t.
func presenceJoinAt(idx *presenceIndex, i int, t int64) presenceMembership {
	c := &idx.calls[i]
	conn := idx.conn(c)
	if conn.closed >= 0 && conn.closed < t {
		return presenceGone
	}
	state := presenceSure
	if c.outcome == history.Info || c.ret >= t || conn.closed >= t {
		state = presenceUncertain
	}
	leave := idx.leaveAfter(i)
	switch {
	case leave == nil:
		return state
	case leave.outcome == history.Ok && leave.ret < t:
		return presenceGone
	default:
		return presenceUncertain
	}
}

// presenceRosterKey is one channel's roster on one node.
type presenceRosterKey struct {
	node, channel string
}

func (k presenceRosterKey) String() string {
	return k.channel + " on " + k.node
}

// convergenceCheckFinal compares every read invoked in the final phase with
// the truth, and returns the rosters read.
func convergenceCheckFinal(idx *presenceIndex, truth map[string]*presenceTruth, final int64, res *Result) map[presenceRosterKey]bool {
	covered := map[presenceRosterKey]bool{}
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.f != history.FMembers || c.call < final {
			continue
		}
		if c.outcome != history.Ok {
			res.Counts["final-read-failed"]++
			continue
		}
		res.Counts["final-reads"]++
		covered[presenceRosterKey{c.node, c.channel}] = true
		missing, extra := truth[c.channel].diff(presenceMemberIDs(c.members))
		if len(missing)+len(extra) == 0 {
			continue
		}
		res.AddAnomaly("final-mismatch", Anomaly{
			Description: fmt.Sprintf("final roster of %s on %s differs from the truth: %s", c.channel, c.node, presenceDiff(missing, extra)),
			Time:        c.ret, Ops: []int{c.invoke, c.done}, Node: c.node, Channel: c.channel,
		})
	}
	return covered
}

// convergenceMissingReads lists the node and channel pairs without a final
// read, e.g. "c1 on n2".
func convergenceMissingReads(nodes []string, truth map[string]*presenceTruth, covered map[presenceRosterKey]bool) []string {
	channels := map[string]bool{}
	for ch := range truth {
		channels[ch] = true
	}
	for k := range covered {
		channels[k.channel] = true
	}
	var missing []string
	for _, ch := range presenceSorted(channels) {
		for _, n := range nodes {
			if k := (presenceRosterKey{n, ch}); !covered[k] {
				missing = append(missing, k.String())
			}
		}
	}
	return missing
}

// convergenceTime measures when every roster read after the heal phase
// start began to equal the truth, and flags a convergence slower than
// 2 x peer timeout. It counts from the end of the heal phase, because the
// contract's clock starts once the faults are healed and a killed node's
// restart inside the heal phase can take seconds. A roster whose last read
// differs never converged, which the final reads report.
func convergenceTime(idx *presenceIndex, peerTimeout time.Duration, res *Result) {
	healStart, ok := idx.phases[history.PhaseHeal]
	if !ok {
		return
	}
	healed, _ := presenceHealed(idx.ops, idx.phases)
	reads, matches := convergenceReads(idx, healStart)

	// A roster converged between the invoke of its last differing read and
	// the return of the read after it. The return is the convergence time
	// reported, an upper bound, but only a read that was invoked after the
	// limit and still differed proves a slow convergence: the observers
	// read each roster only every few hundred milliseconds.
	converged, lastDiffering := int64(-1), int64(-1)
	var differing presenceRosterKey
	for k, rs := range reads {
		point := rs[0].ret
		for i, r := range rs {
			if matches[r] {
				continue
			}
			if r.call > lastDiffering {
				lastDiffering, differing = r.call, k
			}
			point = -1
			if i+1 < len(rs) {
				point = rs[i+1].ret
			}
		}
		if point < 0 {
			// The last read differs: the roster never converged.
			continue
		}
		converged = max(converged, point)
	}

	if converged >= 0 {
		res.Stats["convergence-ms"] = presenceMillis(max(converged-healed, 0))
		res.Stats["convergence-from-heal-start-ms"] = presenceMillis(max(converged-healStart, 0))
	}
	if late := lastDiffering - healed; lastDiffering >= 0 && late > int64(2*peerTimeout) {
		res.AddAnomaly("slow-convergence", Anomaly{
			Description: fmt.Sprintf("roster of %s still differed from the truth in a read invoked %.0f ms after the heal, later than 2 x peer timeout (%s)",
				differing, presenceMillis(late), 2*peerTimeout),
			Time: lastDiffering, Node: differing.node, Channel: differing.channel,
		})
	}
}

// convergenceReads returns the ok roster reads invoked since from, by
// roster in return order, and whether each equals the truth at its invoke
// time. After the heal only connections that end change the truth.
func convergenceReads(idx *presenceIndex, from int64) (map[presenceRosterKey][]*presenceCall, map[*presenceCall]bool) {
	reads := map[presenceRosterKey][]*presenceCall{}
	matches := map[*presenceCall]bool{}
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.f != history.FMembers || c.outcome != history.Ok || c.call < from {
			continue
		}
		k := presenceRosterKey{c.node, c.channel}
		reads[k] = append(reads[k], c)
		missing, extra := presenceTruthAt(idx, c.call)[c.channel].diff(presenceMemberIDs(c.members))
		matches[c] = len(missing)+len(extra) == 0
	}
	for _, rs := range reads {
		slices.SortFunc(rs, func(a, b *presenceCall) int { return cmp.Compare(a.ret, b.ret) })
	}
	return reads, matches
}
