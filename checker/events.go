package checker

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/wscluster/wscluster/history"
)

// Events returns the checker of the contract's guarantee 8, event
// consistency. It checks every connection that joined a channel, stayed
// joined and stayed connected until the history ends. It takes the member
// ids of the join result and applies the connection's later presence.join
// and presence.leave events of that channel in order. The result must equal
// the connection's last roster read invoked after the recovery phase began,
// when the cluster is quiet.
//
// The history stamps an event with the time the client decoded it, but a
// reply with the time the worker recorded it, a moment later. An event
// decoded between a read's invoke and its recorded return may therefore
// have been queued before or after the reply, so the check accepts the read
// if it equals the roster at any point among those events. Events decoded
// after a join's invoke are all applied: one queued before the join's reply
// is already in its roster, and applying it again changes nothing.
func Events() Checker { return eventsChecker{} }

type eventsChecker struct{}

func (eventsChecker) Name() string { return "event-consistency" }

func (eventsChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{"checked": 0, "unread": 0, "event-mismatch": 0}}
	idx := presenceIndexHistory(in.History)
	recovery, ok := idx.phases[history.PhaseRecovery]
	if !ok {
		res.Valid, res.Summary = Unknown, "no recovery phase in the history, so no roster was read while the cluster was quiet"
		return res
	}
	events := eventsByMembership(in.History)
	joins, reads := eventsLastJoinsAndReads(idx, recovery)
	for _, k := range slices.SortedFunc(maps.Keys(joins), eventsCompareKeys) {
		read, ok := reads[k]
		if !ok || read.call <= joins[k].ret {
			res.Counts["unread"]++
			continue
		}
		res.Counts["checked"]++
		eventsCompare(joins[k], read, events[k], &res)
	}

	switch {
	case res.Counts["event-mismatch"] > 0:
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("%d of %d connections ended with a roster from events that differs from their last read",
			res.Counts["event-mismatch"], res.Counts["checked"])
	case res.Counts["checked"] == 0:
		res.Valid = Unknown
		res.Summary = fmt.Sprintf("no connection stayed joined and read its roster after the recovery phase began (%d joined without such a read)", res.Counts["unread"])
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("the rosters built from events equal the last read on all %d connections checked", res.Counts["checked"])
	}
	return res
}

func eventsCompareKeys(a, b presenceJoinKey) int {
	return cmp.Or(cmp.Compare(a.conn.process, b.conn.process), cmp.Compare(a.conn.epoch, b.conn.epoch), cmp.Compare(a.channel, b.channel))
}

// eventsByMembership returns the presence events of every connection and
// channel, in the order the connection decoded them.
func eventsByMembership(ops []history.Op) map[presenceJoinKey][]*history.Op {
	events := map[presenceJoinKey][]*history.Op{}
	for i := range ops {
		op := &ops[i]
		if op.Type != history.Event || (op.F != history.FPresenceJoin && op.F != history.FPresenceLeave) {
			continue
		}
		k := presenceJoinKey{presenceConnKey{op.Process, op.Epoch}, op.Channel}
		events[k] = append(events[k], op)
	}
	for _, evs := range events {
		slices.SortStableFunc(evs, func(a, b *history.Op) int { return cmp.Compare(a.Time, b.Time) })
	}
	return events
}

// eventsLastJoinsAndReads returns the last ok join of every connection and
// channel that neither left nor ended, and the last ok roster read of every
// connection and channel invoked after recovery.
func eventsLastJoinsAndReads(idx *presenceIndex, recovery int64) (joins, reads map[presenceJoinKey]*presenceCall) {
	joins, reads = map[presenceJoinKey]*presenceCall{}, map[presenceJoinKey]*presenceCall{}
	for i := range idx.calls {
		c := &idx.calls[i]
		k := presenceJoinKey{c.conn, c.channel}
		switch {
		case c.f == history.FJoin && c.outcome == history.Ok:
			joins[k] = c
		case (c.f == history.FJoin && c.outcome == history.Info) || (c.f == history.FLeave && c.outcome != history.Fail):
			// A join of unknown outcome, or a leave that may have happened,
			// leaves the roster of events undefined. A failed join changed
			// nothing.
			delete(joins, k)
		case c.f == history.FMembers && c.outcome == history.Ok && c.call >= recovery:
			reads[k] = c
		}
	}
	for k := range joins {
		if conn := idx.conns[k.conn]; conn == nil || conn.closed >= 0 {
			delete(joins, k)
		}
	}
	return joins, reads
}

// eventsCompare applies events to the roster of join and compares the
// result with read.
func eventsCompare(join, read *presenceCall, events []*history.Op, res *Result) {
	roster := presenceMemberIDs(join.members)
	var ambiguous []*history.Op
	applied := 0
	for _, ev := range events {
		switch {
		case ev.Time <= join.call || ev.Time > read.ret:
			continue
		case ev.Time <= read.call:
			eventsApply(roster, ev)
			applied++
		default:
			ambiguous = append(ambiguous, ev)
		}
	}

	// Try the reply's place before every event decoded while the read was
	// in flight, and after the last.
	want := presenceMemberIDs(read.members)
	trial := maps.Clone(roster)
	if maps.Equal(trial, want) {
		return
	}
	for _, ev := range ambiguous {
		eventsApply(trial, ev)
		if maps.Equal(trial, want) {
			return
		}
	}

	// Report the difference with the events decoded before the read's
	// invoke applied.
	missing, extra := (&presenceTruth{sure: roster}).diff(want)
	res.AddAnomaly("event-mismatch", Anomaly{
		Description: fmt.Sprintf("connection %s of %s on %s: the join roster with %d events applied differs from its last read, which misses %v and lists %v besides",
			join.conn, join.channel, join.node, applied, missing, extra),
		Time: read.ret, Ops: []int{join.done, read.done}, Node: join.node, Channel: join.channel,
	})
}

func eventsApply(roster map[string]bool, ev *history.Op) {
	if ev.F == history.FPresenceJoin {
		roster[ev.Member] = true
	} else {
		delete(roster, ev.Member)
	}
}
