package checker

import (
	"slices"

	"github.com/wscluster/wscluster/history"
)

// Window is the span of one fault, from its start entry to its stop entry.
// A fault never stopped (a run that crashed) ends at the history's end.
type Window struct {
	Fault history.Fault
	Start int64
	Stop  int64
}

// Touches reports whether the fault touched node. A fault of the Redis
// server itself (redis-kill, redis-pause) touches every node, because it
// cuts the backplane path of all of them. A partition or a latency fault on
// one node's Redis link touches only that node, which is in Nodes.
func (w Window) Touches(node string) bool {
	if w.Fault.Kind == history.FaultRedisKill || w.Fault.Kind == history.FaultRedisPause {
		return true
	}
	return slices.Contains(w.Fault.Nodes, node)
}

// Windows returns the fault windows of a history in start order.
func Windows(ops []history.Op) []Window {
	open := map[string]int{}
	var ws []Window
	var end int64
	for _, op := range ops {
		end = max(end, op.Time)
		if op.Type != history.Nemesis || op.Fault == nil {
			continue
		}
		switch op.F {
		case history.FFaultStart:
			open[op.Fault.ID] = len(ws)
			ws = append(ws, Window{Fault: *op.Fault, Start: op.Time, Stop: -1})
		case history.FFaultStop:
			if i, ok := open[op.Fault.ID]; ok {
				ws[i].Stop = op.Time
				delete(open, op.Fault.ID)
			}
		}
	}
	for i := range ws {
		if ws[i].Stop < 0 {
			ws[i].Stop = end
		}
	}
	return ws
}

// InWindow reports whether time t falls in a window that touches any of the
// nodes, extended by grace after its stop. before extends it backwards,
// for operations already in flight when the fault began.
func InWindow(ws []Window, t, before, grace int64, nodes ...string) bool {
	for _, w := range ws {
		if t < w.Start-before || t > w.Stop+grace {
			continue
		}
		for _, n := range nodes {
			if w.Touches(n) {
				return true
			}
		}
	}
	return false
}

// PhaseTimes returns the start time of every phase in the history, by
// phase name.
func PhaseTimes(ops []history.Op) map[string]int64 {
	ts := map[string]int64{}
	for _, op := range ops {
		if op.Type == history.Phase {
			if _, ok := ts[op.F]; !ok {
				ts[op.F] = op.Time
			}
		}
	}
	return ts
}
