package checker

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/wscluster/wscluster/history"
)

// Limits of the presence linearizability check.
const (
	// linearBudget is the time porcupine may spend on one history, shared
	// among the (channel, node) groups: a group gets an equal share of
	// what the groups before it left.
	linearBudget = 10 * time.Second
	// linearMinTimeout keeps a group's timeout above zero, which porcupine
	// would read as no timeout at all.
	linearMinTimeout = 50 * time.Millisecond
	// linearMaxOps is the largest partition checked. Porcupine's search
	// can take exponential time, so a larger partition is reported as
	// unknown rather than cut short.
	linearMaxOps = 2000
)

// Linearizable returns the checker "presence-linearizable". A node's own
// part of a channel's roster, the members whose connection is on that node,
// lives on that node alone, so it must behave like one set that changes at
// one instant per operation. The checker partitions the history by channel
// and node incarnation, because a node killed and restarted starts with an
// empty roster, and checks each partition with porcupine:
//
//   - a join adds its member; its result's entries on the node must equal
//     the set after the join;
//   - a leave, and the end of a connection that had joined, removes it;
//   - a roster read on the node must list the set's entries on the node.
//
// The end of a connection takes effect somewhere after the FDrop invoke,
// or, for a connection lost, after the invoke of its last operation that
// completed ok, because the server handled that request while the
// connection was open. It ends at the next read on the node that no longer lists the
// member, or at the end of the history.
//
// The model's state is the set of (member id, connection) pairs and a read
// compares member ids with their number of connections on the node. Most
// member ids have one connection, but an observer that reconnects to the
// same node joins again with the same id, and its old connection may still
// be open for a moment.
//
// A partition that porcupine finds illegal makes the verdict Invalid and is
// written as porcupine's visualization to linear-<channel>-<node>.html in
// the run folder. A timeout or an oversized partition makes it Unknown.
func Linearizable() Checker { return linearChecker{} }

type linearChecker struct{}

func (linearChecker) Name() string { return "presence-linearizable" }

// linearKind is the kind of a model operation.
type linearKind int

const (
	linearJoin linearKind = iota
	linearLeave
	// linearClose is the end of a connection, which acts as a leave.
	linearClose
	linearRead
)

// linearInput is the input of a model operation.
type linearInput struct {
	kind   linearKind
	member string
	conn   string
	// part is the node incarnation, the porcupine partition.
	part int
}

// linearOutput is the output of a join or a read: one member id per
// connection on the node, sorted. known is false for a join of unknown
// outcome.
type linearOutput struct {
	known   bool
	members []string
}

// linearMeta is the metadata of a model operation.
type linearMeta struct {
	// id is the operation's position in its group.
	id int
	// index is the history index of the operation's invoke, or of the
	// entry that ended the connection for a close.
	index int
	what  string
}

// linearState is the model's state: sorted "member\x00connection" pairs.
type linearState []string

func linearPair(member, conn string) string { return member + "\x00" + conn }

// members returns the member id of every pair, sorted.
func (s linearState) members() []string {
	ids := make([]string, len(s))
	for i, p := range s {
		ids[i], _, _ = strings.Cut(p, "\x00")
	}
	slices.Sort(ids)
	return ids
}

func linearStep(state, input, output any) (bool, any) {
	s, in := state.(linearState), input.(linearInput)
	switch in.kind {
	case linearJoin:
		pair := linearPair(in.member, in.conn)
		next := s
		if i, found := slices.BinarySearch(s, pair); !found {
			next = slices.Insert(slices.Clone(s), i, pair)
		}
		out := output.(linearOutput)
		return !out.known || slices.Equal(next.members(), out.members), next
	case linearLeave, linearClose:
		i, found := slices.BinarySearch(s, linearPair(in.member, in.conn))
		if !found {
			return true, s
		}
		return true, slices.Delete(slices.Clone(s), i, i+1)
	default:
		return slices.Equal(s.members(), output.(linearOutput).members), s
	}
}

var linearModel = porcupine.Model{
	Partition: linearPartition,
	Init:      func() any { return linearState(nil) },
	Step:      linearStep,
	Equal:     func(a, b any) bool { return slices.Equal(a.(linearState), b.(linearState)) },
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		for _, p := range state.(linearState) {
			h.Write([]byte(p))
			h.Write([]byte{0xff})
		}
		return h.Sum64()
	},
	DescribeOperation: linearDescribe,
	DescribeState: func(state any) string {
		return fmt.Sprintf("%v", state.(linearState).members())
	},
	DescribeOperationMetadata: func(meta any) string {
		m, _ := meta.(linearMeta)
		return fmt.Sprintf("history entry %d: %s", m.index, m.what)
	},
}

func linearDescribe(input, output any) string {
	in := input.(linearInput)
	out, _ := output.(linearOutput)
	switch in.kind {
	case linearJoin:
		if !out.known {
			return fmt.Sprintf("join %s -> unknown", in.member)
		}
		return fmt.Sprintf("join %s -> %v", in.member, out.members)
	case linearLeave:
		return "leave " + in.member
	case linearClose:
		return fmt.Sprintf("close %s (%s)", in.conn, in.member)
	default:
		return fmt.Sprintf("read -> %v", out.members)
	}
}

// linearPartition splits a group's operations by node incarnation, in
// incarnation order.
func linearPartition(ops []porcupine.Operation) [][]porcupine.Operation {
	byPart := map[int][]porcupine.Operation{}
	for _, op := range ops {
		p := op.Input.(linearInput).part
		byPart[p] = append(byPart[p], op)
	}
	var parts [][]porcupine.Operation
	for _, p := range slices.Sorted(maps.Keys(byPart)) {
		parts = append(parts, byPart[p])
	}
	return parts
}

func (linearChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{}}
	for _, kind := range []string{"groups", "partitions", "operations", "ok", "unknown", "too-large", "not-linearizable"} {
		res.Counts[kind] = 0
	}
	groups := linearGroups(presenceIndexHistory(in.History), Windows(in.History))
	if len(groups) == 0 {
		res.Valid, res.Summary = Unknown, "no presence operation to check"
		return res
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b presenceRosterKey) int {
		return cmp.Or(cmp.Compare(a.channel, b.channel), cmp.Compare(a.node, b.node))
	})
	res.Counts["groups"] = len(keys)

	deadline := time.Now().Add(linearBudget)
	var undecided []string
	for i, k := range keys {
		g := groups[k]
		parts := linearPartition(g.ops)
		res.Counts["partitions"] += len(parts)
		res.Counts["operations"] += len(g.ops)
		if largest := linearLargest(parts); largest > linearMaxOps {
			res.Counts["too-large"]++
			undecided = append(undecided, fmt.Sprintf("%s has %d operations in one incarnation, more than the %d checked", k, largest, linearMaxOps))
			continue
		}
		timeout := max(time.Until(deadline)/time.Duration(len(keys)-i), linearMinTimeout)
		result, info := porcupine.CheckOperationsVerbose(linearModel, g.ops, timeout)
		switch result {
		case porcupine.Ok:
			res.Counts["ok"]++
		case porcupine.Illegal:
			linearReport(in.Dir, k, parts, info, &res)
		default:
			res.Counts["unknown"]++
			undecided = append(undecided, fmt.Sprintf("%s timed out after %s", k, timeout.Round(time.Millisecond)))
		}
	}

	linearDecide(&res, undecided)
	return res
}

// linearDecide sets the verdict and the summary.
func linearDecide(res *Result, undecided []string) {
	switch {
	case res.Counts["not-linearizable"] > 0:
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("%d of %d node-local rosters are not linearizable", res.Counts["not-linearizable"], res.Counts["partitions"])
	case len(undecided) > 0:
		res.Valid = Unknown
		res.Summary = "not decided: " + strings.Join(undecided, "; ")
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("all %d node-local rosters are linearizable (%d operations)", res.Counts["partitions"], res.Counts["operations"])
	}
}

func linearLargest(parts [][]porcupine.Operation) int {
	largest := 0
	for _, p := range parts {
		largest = max(largest, len(p))
	}
	return largest
}

// linearGroup is the model operations on one channel's roster on one node.
type linearGroup struct {
	ops []porcupine.Operation
	// procs are the client processes of ops, for the visualization rows.
	procs []int
}

func (g *linearGroup) add(process int, op porcupine.Operation) {
	meta := op.Metadata.(linearMeta)
	meta.id = len(g.ops)
	op.Metadata = meta
	g.ops = append(g.ops, op)
	g.procs = append(g.procs, process)
}

// linearGroups turns the presence operations of idx into model operations,
// grouped by channel and node.
func linearGroups(idx *presenceIndex, ws []Window) map[presenceRosterKey]*linearGroup {
	incarnation := linearIncarnations(ws)
	never := idx.end + 1
	groups := map[presenceRosterKey]*linearGroup{}
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.outcome == history.Fail || (c.f != history.FJoin && c.f != history.FLeave && c.f != history.FMembers) {
			continue
		}
		conn := idx.conn(c)
		k := presenceRosterKey{conn.node, c.channel}
		if groups[k] == nil {
			groups[k] = &linearGroup{}
		}
		g, part := groups[k], incarnation(conn.node, conn.opened)
		if op, ok := linearOperation(c, conn.node, part, never); ok {
			g.add(c.conn.process, op)
		}
		if op, ok := linearCloseOperation(idx, i, part, never); ok {
			g.add(c.conn.process, op)
		}
	}
	for _, g := range groups {
		linearEndCloses(g, never)
		linearAssignRows(g)
	}
	return groups
}

// linearIncarnations returns a function that numbers the incarnation of a
// node at a time by the kills of the node that began before it.
func linearIncarnations(ws []Window) func(node string, t int64) int {
	kills := map[string][]int64{}
	for _, w := range ws {
		if w.Fault.Kind == history.FaultKill {
			for _, n := range w.Fault.Nodes {
				kills[n] = append(kills[n], w.Start)
			}
		}
	}
	return func(node string, t int64) int {
		n := 0
		for _, start := range kills[node] {
			if start <= t {
				n++
			}
		}
		return n
	}
}

// linearOperation returns the model operation of a join, leave or read
// that did not fail. An operation of unknown outcome may take effect until
// the history ends.
func linearOperation(c *presenceCall, node string, part int, never int64) (porcupine.Operation, bool) {
	in := linearInput{member: c.member, conn: c.conn.String(), part: part}
	out := linearOutput{known: c.outcome == history.Ok}
	if out.known {
		out.members = linearLocal(c.members, node)
	}
	ret := c.ret
	if !out.known {
		ret = never
	}
	switch c.f {
	case history.FJoin:
		in.kind = linearJoin
	case history.FLeave:
		// A leave of a connection that never joined changes nothing.
		if c.member == "" {
			return porcupine.Operation{}, false
		}
		in.kind = linearLeave
	default:
		if !out.known {
			return porcupine.Operation{}, false
		}
		in.kind = linearRead
	}
	what := fmt.Sprintf("%s %s of %s on %s (%s)", c.f, c.outcome, c.conn, node, c.channel)
	return porcupine.Operation{Input: in, Output: out, Call: c.call, Return: ret, Metadata: linearMeta{index: c.invoke, what: what}}, true
}

// linearCloseOperation returns the leave that the end of a connection
// implies for the join idx.calls[join], unless a leave of known outcome
// came first or the connection stayed open. Its return is set later by
// linearEndCloses.
func linearCloseOperation(idx *presenceIndex, join, part int, never int64) (porcupine.Operation, bool) {
	c := &idx.calls[join]
	conn := idx.conn(c)
	if c.f != history.FJoin || conn.closed < 0 {
		return porcupine.Operation{}, false
	}
	if l := idx.leaveAfter(join); l != nil && l.outcome == history.Ok {
		return porcupine.Operation{}, false
	}
	call, why := conn.closed, "dropped"
	if !conn.dropped {
		call, why = max(conn.lastOkCall, c.call), "lost"
	}
	in := linearInput{kind: linearClose, member: c.member, conn: c.conn.String(), part: part}
	what := fmt.Sprintf("connection %s on %s %s", c.conn, conn.node, why)
	return porcupine.Operation{Input: in, Output: linearOutput{}, Call: call, Return: never, Metadata: linearMeta{index: conn.closedIndex, what: what}}, true
}

// linearLocal returns one member id per connection on node, sorted.
func linearLocal(roster []history.Member, node string) []string {
	var ids []string
	for _, m := range roster {
		for _, c := range m.Connections {
			if c.Node == node {
				ids = append(ids, m.Member)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// linearEndCloses ends every close at the return of the first read of its
// incarnation invoked after the close began that no longer lists the
// member: the close must have taken effect by then.
func linearEndCloses(g *linearGroup, never int64) {
	for i := range g.ops {
		op := &g.ops[i]
		in := op.Input.(linearInput)
		if in.kind != linearClose {
			continue
		}
		for _, r := range g.ops {
			rin := r.Input.(linearInput)
			if rin.kind != linearRead || rin.part != in.part || r.Call < op.Call || r.Return >= op.Return {
				continue
			}
			if !slices.Contains(r.Output.(linearOutput).members, in.member) {
				op.Return = r.Return
			}
		}
		op.Return = min(op.Return, never)
	}
}

// linearAssignRows gives every operation a visualization row of its
// process that no other operation uses at the same time.
func linearAssignRows(g *linearGroup) {
	order := make([]int, len(g.ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(g.ops[a].Call, g.ops[b].Call) })
	rows := map[int][]int{}
	var rowEnd []int64
	for _, i := range order {
		op := &g.ops[i]
		row := -1
		for _, r := range rows[g.procs[i]] {
			if rowEnd[r] < op.Call {
				row = r
				break
			}
		}
		if row < 0 {
			row = len(rowEnd)
			rowEnd = append(rowEnd, 0)
			rows[g.procs[i]] = append(rows[g.procs[i]], row)
		}
		op.ClientId, rowEnd[row] = row, op.Return
	}
}

// linearFileName returns the visualization file of a roster, with every
// character outside [A-Za-z0-9._-] of the channel and node replaced.
func linearFileName(k presenceRosterKey) string {
	return "linear-" + linearUnsafe.ReplaceAllString(k.channel, "_") + "-" + linearUnsafe.ReplaceAllString(k.node, "_") + ".html"
}

var linearUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// linearReport writes the visualization of an illegal group into dir and
// adds an anomaly for every illegal partition, naming the operation that
// no order could place.
func linearReport(dir string, k presenceRosterKey, parts [][]porcupine.Operation, info porcupine.LinearizationInfo, res *Result) {
	see := "no run folder to write a visualization into"
	if dir != "" {
		name := linearFileName(k)
		if err := porcupine.VisualizePath(linearModel, info, filepath.Join(dir, name)); err != nil {
			see = fmt.Sprintf("writing the visualization %s failed: %v", name, err)
		} else {
			see = "see " + name
			res.Artifacts = append(res.Artifacts, name)
		}
	}
	partials := info.PartialLinearizationsOperations()
	for p, ops := range parts {
		stuck, ok := linearStuck(ops, partials[p])
		if !ok {
			continue
		}
		meta := stuck.Metadata.(linearMeta)
		res.AddAnomaly("not-linearizable", Anomaly{
			Description: fmt.Sprintf("roster of %s (incarnation %d) is not linearizable: no order of its operations places %s, history entry %d (%s); %s",
				k, ops[0].Input.(linearInput).part, linearDescribe(stuck.Input, stuck.Output), meta.index, meta.what, see),
			Time: stuck.Call, Ops: []int{meta.index}, Node: k.node, Channel: k.channel,
		})
	}
}

// linearStuck returns the operation of a partition that its longest partial
// linearization misses and that returned first, or false when the
// partition was linearized in full.
func linearStuck(ops []porcupine.Operation, partials [][]porcupine.Operation) (porcupine.Operation, bool) {
	var longest []porcupine.Operation
	for _, l := range partials {
		if len(l) > len(longest) {
			longest = l
		}
	}
	if len(longest) == len(ops) {
		return porcupine.Operation{}, false
	}
	placed := map[int]bool{}
	for _, op := range longest {
		placed[op.Metadata.(linearMeta).id] = true
	}
	var stuck *porcupine.Operation
	for i := range ops {
		if !placed[ops[i].Metadata.(linearMeta).id] && (stuck == nil || ops[i].Return < stuck.Return) {
			stuck = &ops[i]
		}
	}
	if stuck == nil {
		return porcupine.Operation{}, false
	}
	return *stuck, true
}
