package checker

import (
	"cmp"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/wscluster/wscluster/history"
)

// Limits of the total order check's porcupine part.
const (
	// totalOrderBudget is the time porcupine may spend on one history,
	// shared among the channels like linearBudget.
	totalOrderBudget = 10 * time.Second
	// totalOrderMaxOps is the largest segment given to porcupine (see
	// totalOrderSegment). Its memory grows with the square of a segment's
	// operations: about 18 MB at this size.
	totalOrderMaxOps = 12000
)

// TotalOrder returns the checker "total-order" for nodes started with
// --ordering total, where every subscriber of a channel must see its
// messages in one common order. For other runs it is Valid with the summary
// "not applicable".
//
// Only each subscriber connection's first delivery of a message counts, and
// redeliveries of QoS 1 are left out because a redelivery comes late by
// design. Two checks run on every channel:
//
//   - The direct check builds a graph of the messages with an edge from
//     each first delivery of a subscriber to its next one. The orders have a
//     common order if and only if the graph has no cycle, and a cycle is an
//     "order-conflict".
//   - Porcupine checks a model of the channel as an append-only log. A
//     publish appends its message between its invoke and the earlier of its
//     return and the message's first delivery. A publish of unknown outcome,
//     or one that failed yet was delivered, counts until that delivery. A
//     subscriber's delivery of a message at time t observes that the message
//     is in the log and comes after the subscriber's previous message. This
//     adds real time to the direct check: a publish that returned before
//     another one began must come first.
//     An illegal history is "not-linearizable", written as porcupine's
//     visualization to linear-order-<channel>.html in the run folder. A
//     channel too large for porcupine, or a timeout, leaves the verdict to
//     the direct check, which decides the guarantee on its own.
func TotalOrder() Checker { return totalOrderChecker{} }

type totalOrderChecker struct{}

func (totalOrderChecker) Name() string { return "total-order" }

// totalOrderKey identifies a message by its payload's publisher connection
// and sequence number, which the pubsub workload makes unique per channel.
type totalOrderKey struct {
	process, epoch int
	seq            int64
}

func (k totalOrderKey) String() string {
	return fmt.Sprintf("p%d.e%d.s%d", k.process, k.epoch, k.seq)
}

// totalOrderDelivery is one subscriber's first delivery of a message.
type totalOrderDelivery struct {
	key   totalOrderKey
	time  int64
	index int
}

// totalOrderChannel is the publishes and first deliveries of one channel.
type totalOrderChannel struct {
	publishes map[totalOrderKey]*presenceCall
	// subscribers maps each subscriber connection to its first deliveries,
	// in the order it decoded them.
	subscribers map[presenceConnKey][]totalOrderDelivery
}

func (totalOrderChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{}}
	if in.Run.Ordering != "total" {
		res.Valid, res.Summary = Valid, "not applicable: the nodes do not run with --ordering total"
		return res
	}
	for _, kind := range []string{"channels", "subscribers", "first-deliveries", "order-conflict", "not-linearizable", "porcupine-ok", "porcupine-undecided"} {
		res.Counts[kind] = 0
	}
	channels := totalOrderCollect(in.History)
	names := slices.Sorted(maps.Keys(channels))
	res.Counts["channels"] = len(names)
	for _, name := range names {
		ch := channels[name]
		res.Counts["subscribers"] += len(ch.subscribers)
		for _, ds := range ch.subscribers {
			res.Counts["first-deliveries"] += len(ds)
		}
		totalOrderFindCycle(name, ch, &res)
	}
	if res.Counts["first-deliveries"] == 0 {
		res.Valid, res.Summary = Unknown, "no message was delivered, so there is no order to compare"
		return res
	}

	undecided := totalOrderPorcupine(in.Dir, names, channels, &res)
	switch {
	case res.Counts["order-conflict"]+res.Counts["not-linearizable"] > 0:
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("%d channels whose subscribers saw conflicting orders, %d whose order contradicts real time",
			res.Counts["order-conflict"], res.Counts["not-linearizable"])
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("the %d subscribers of %d channels saw one common order", res.Counts["subscribers"], len(names))
		if len(undecided) > 0 {
			res.Summary += "; real-time order not checked for " + strings.Join(undecided, ", ")
		}
	}
	return res
}

// totalOrderCollect returns every channel's publishes and first deliveries.
// A message whose data is no payload of the workload is left out, because
// the delivery checker reports it.
func totalOrderCollect(ops []history.Op) map[string]*totalOrderChannel {
	channels := map[string]*totalOrderChannel{}
	get := func(name string) *totalOrderChannel {
		if channels[name] == nil {
			channels[name] = &totalOrderChannel{
				publishes:   map[totalOrderKey]*presenceCall{},
				subscribers: map[presenceConnKey][]totalOrderDelivery{},
			}
		}
		return channels[name]
	}
	idx := presenceIndexHistory(ops)
	for i := range idx.calls {
		c := &idx.calls[i]
		if c.f != history.FPublish {
			continue
		}
		if k, err := totalOrderParse(c.value); err == nil {
			get(c.channel).publishes[k] = c
		}
	}
	totalOrderFirstDeliveries(ops, get)
	return channels
}

// totalOrderFirstDeliveries adds every subscriber connection's first
// deliveries, in the order it decoded them, to the channels that get
// returns. Redeliveries are left out.
func totalOrderFirstDeliveries(ops []history.Op, get func(name string) *totalOrderChannel) {
	seen := map[presenceJoinKey]map[totalOrderKey]bool{}
	for i := range ops {
		op := &ops[i]
		if op.Type != history.Event || op.F != history.FMessage || op.Redelivered {
			continue
		}
		k, err := totalOrderParse(op.Value)
		if err != nil {
			continue
		}
		sub := presenceJoinKey{presenceConnKey{op.Process, op.Epoch}, op.Channel}
		if seen[sub] == nil {
			seen[sub] = map[totalOrderKey]bool{}
		}
		if seen[sub][k] {
			continue
		}
		seen[sub][k] = true
		ch := get(op.Channel)
		ch.subscribers[sub.conn] = append(ch.subscribers[sub.conn], totalOrderDelivery{key: k, time: op.Time, index: op.Index})
	}
	for sub := range seen {
		ds := get(sub.channel).subscribers[sub.conn]
		slices.SortStableFunc(ds, func(a, b totalOrderDelivery) int { return cmp.Compare(a.time, b.time) })
	}
}

func totalOrderParse(data []byte) (totalOrderKey, error) {
	p, err := history.ParsePayload(data)
	if err != nil {
		return totalOrderKey{}, err
	}
	return totalOrderKey{p.Process, p.Epoch, p.Seq}, nil
}

// totalOrderEdge is the precedence of message from over message to, because
// the subscriber sub received them one after the other.
type totalOrderEdge struct {
	from, to int
	sub      presenceConnKey
	// index is the history index of the delivery of to.
	index int
}

// totalOrderFindCycle reports a cycle in the precedence graph of a channel
// as an order conflict.
func totalOrderFindCycle(name string, ch *totalOrderChannel, res *Result) {
	keys, adj := totalOrderGraph(ch)
	cycle := totalOrderCycle(adj)
	if cycle == nil {
		return
	}
	var steps []string
	var ops []int
	for i, e := range cycle {
		if i == MaxExamples {
			steps = append(steps, fmt.Sprintf("... (%d more)", len(cycle)-i))
			break
		}
		steps = append(steps, fmt.Sprintf("%s before %s at %s", keys[e.from], keys[e.to], e.sub))
		ops = append(ops, e.index)
	}
	res.AddAnomaly("order-conflict", Anomaly{
		Description: fmt.Sprintf("subscribers of %s saw orders that no single order contains: %s", name, strings.Join(steps, ", ")),
		Ops:         ops, Channel: name,
	})
}

// totalOrderGraph returns the precedence graph of a channel: its messages,
// numbered, and the edges from each, one per pair of messages.
func totalOrderGraph(ch *totalOrderChannel) ([]totalOrderKey, [][]totalOrderEdge) {
	ids := map[totalOrderKey]int{}
	var keys []totalOrderKey
	var adj [][]totalOrderEdge
	id := func(k totalOrderKey) int {
		if i, ok := ids[k]; ok {
			return i
		}
		ids[k] = len(keys)
		keys = append(keys, k)
		adj = append(adj, nil)
		return len(keys) - 1
	}

	// Subscribers in a fixed order make the reported cycle the same on
	// every run of the checker.
	subs := slices.SortedFunc(maps.Keys(ch.subscribers), func(a, b presenceConnKey) int {
		return cmp.Or(cmp.Compare(a.process, b.process), cmp.Compare(a.epoch, b.epoch))
	})
	seen := map[[2]int]bool{}
	for _, sub := range subs {
		ds := ch.subscribers[sub]
		for i := 1; i < len(ds); i++ {
			from, to := id(ds[i-1].key), id(ds[i].key)
			if !seen[[2]int{from, to}] {
				seen[[2]int{from, to}] = true
				adj[from] = append(adj[from], totalOrderEdge{from: from, to: to, sub: sub, index: ds[i].index})
			}
		}
	}
	return keys, adj
}

// totalOrderFrame is one node on the depth-first search's stack.
type totalOrderFrame struct {
	node, next int
	// via is the edge that reached node. Its from is -1 for a root.
	via totalOrderEdge
}

// totalOrderCycle returns the edges of a cycle of the graph, or nil. The
// depth-first search keeps its own stack, because a channel's messages can
// form a path too long for recursion.
func totalOrderCycle(adj [][]totalOrderEdge) []totalOrderEdge {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(adj))
	for root := range adj {
		if color[root] != white {
			continue
		}
		color[root] = grey
		stack := []totalOrderFrame{{node: root, via: totalOrderEdge{from: -1}}}
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next == len(adj[f.node]) {
				color[f.node] = black
				stack = stack[:len(stack)-1]
				continue
			}
			e := adj[f.node][f.next]
			f.next++
			switch color[e.to] {
			case white:
				color[e.to] = grey
				stack = append(stack, totalOrderFrame{node: e.to, via: e})
			case grey:
				return totalOrderCyclePath(e, stack)
			}
		}
	}
	return nil
}

// totalOrderCyclePath returns the cycle that the back edge closes: the
// edges on the stack from the back edge's target up, then the back edge.
func totalOrderCyclePath(back totalOrderEdge, stack []totalOrderFrame) []totalOrderEdge {
	start := 0
	for i, f := range stack {
		if f.node == back.to {
			start = i
		}
	}
	var path []totalOrderEdge
	for _, f := range stack[start+1:] {
		path = append(path, f.via)
	}
	return append(path, back)
}

// totalOrderLog is the model's state: an append-only log as an immutable
// linked list from its last message back, so a step shares the log
// before it instead of copying it. nil is the empty log.
type totalOrderLog struct {
	parent *totalOrderLog
	// jump is a farther ancestor, chosen in the skew-binary pattern of
	// jump pointers, so that ancestorAt takes O(log n) steps.
	jump   *totalOrderLog
	key    totalOrderKey
	length int
	// hash covers every message in order.
	hash uint64
}

// ancestorAt returns the entry of l's log at position length (from 1), or
// nil when the log is shorter.
func (l *totalOrderLog) ancestorAt(length int) *totalOrderLog {
	for l != nil && l.length > length {
		if l.jump != nil && l.jump.length >= length {
			l = l.jump
		} else {
			l = l.parent
		}
	}
	if l == nil || l.length != length {
		return nil
	}
	return l
}

// totalOrderInput is a model operation: an append of key, or the
// observation that key is in the log, after prev if hasPrev.
type totalOrderInput struct {
	observe   bool
	key, prev totalOrderKey
	hasPrev   bool
	// segment is the porcupine partition, see totalOrderSegment.
	segment int
}

// totalOrderLogs creates the entries of one check's logs. Every entry is
// created once per parent and remembered per message, so that a step finds
// a message in a log without walking it: the search backtracks often, and
// a walk would cost the log's length each time.
type totalOrderLogs struct {
	entries map[totalOrderLink]*totalOrderLog
	byKey   map[totalOrderKey][]*totalOrderLog
}

// totalOrderLink is an entry's parent and message.
type totalOrderLink struct {
	parent *totalOrderLog
	key    totalOrderKey
}

func (ls *totalOrderLogs) appendTo(parent *totalOrderLog, key totalOrderKey) *totalOrderLog {
	link := totalOrderLink{parent, key}
	if e, ok := ls.entries[link]; ok {
		return e
	}
	e := &totalOrderLog{parent: parent, jump: parent, key: key, length: 1, hash: totalOrderHashKey(key)}
	if parent != nil {
		e.length = parent.length + 1
		e.hash = parent.hash*1099511628211 + e.hash
		if j := parent.jump; j != nil && j.jump != nil && parent.length-j.length == j.length-j.jump.length {
			e.jump = j.jump
		}
	}
	ls.entries[link] = e
	ls.byKey[key] = append(ls.byKey[key], e)
	return e
}

// find returns the entry of key in log, or nil.
func (ls *totalOrderLogs) find(log *totalOrderLog, key totalOrderKey) *totalOrderLog {
	for _, e := range ls.byKey[key] {
		if log != nil && e.length <= log.length && log.ancestorAt(e.length) == e {
			return e
		}
	}
	return nil
}

func (ls *totalOrderLogs) step(state, input, _ any) (bool, any) {
	log, in := state.(*totalOrderLog), input.(totalOrderInput)
	if !in.observe {
		return true, ls.appendTo(log, in.key)
	}
	at := ls.find(log, in.key)
	if at == nil || !in.hasPrev {
		return at != nil, log
	}
	prev := ls.find(log, in.prev)
	return prev != nil && prev.length < at.length, log
}

// totalOrderHashKey mixes a key into 64 bits with the finalizer of
// SplitMix64.
func totalOrderHashKey(k totalOrderKey) uint64 {
	x := uint64(k.process)<<48 ^ uint64(k.epoch)<<32 ^ uint64(k.seq)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// totalOrderEqual compares two logs. Entries are created once per parent
// and message, so equal logs are the same pointer.
func totalOrderEqual(a, b any) bool {
	return a.(*totalOrderLog) == b.(*totalOrderLog)
}

// totalOrderNewModel returns the model of one channel's log, for the given
// number of segments. Each check needs its own, because the model remembers
// the entries it created. Porcupine checks the segments in parallel, so each
// has its own totalOrderLogs, all created before the check starts.
func totalOrderNewModel(segments int) porcupine.Model {
	logs := make([]*totalOrderLogs, segments)
	for i := range logs {
		logs[i] = &totalOrderLogs{entries: map[totalOrderLink]*totalOrderLog{}, byKey: map[totalOrderKey][]*totalOrderLog{}}
	}
	return porcupine.Model{
		Partition: totalOrderPartition,
		Init:      func() any { return (*totalOrderLog)(nil) },
		Step: func(state, input, output any) (bool, any) {
			return logs[input.(totalOrderInput).segment].step(state, input, output)
		},
		Equal: totalOrderEqual,
		Hash: func(state any) uint64 {
			if log := state.(*totalOrderLog); log != nil {
				return log.hash
			}
			return 0
		},
		DescribeOperation: totalOrderDescribe,
		// The whole log would make the visualization quadratic in size.
		DescribeState: func(state any) string {
			log := state.(*totalOrderLog)
			if log == nil {
				return "empty log"
			}
			return fmt.Sprintf("%d messages, last %s", log.length, log.key)
		},
		DescribeOperationMetadata: linearModel.DescribeOperationMetadata,
	}
}

func totalOrderDescribe(input, _ any) string {
	in := input.(totalOrderInput)
	switch {
	case !in.observe:
		return fmt.Sprintf("append %s", in.key)
	case in.hasPrev:
		return fmt.Sprintf("deliver %s after %s", in.key, in.prev)
	default:
		return fmt.Sprintf("deliver %s first", in.key)
	}
}

// totalOrderOperations returns the model operations of a channel, split
// into segments by totalOrderSegment.
//
// A publish must have been appended before its first delivery anywhere, so
// its return is at most that time, also when its outcome is unknown or it
// failed. A publish delivered to no subscriber is left out: no observation
// names it, so it fits into any order.
//
// Each distinct pair of consecutive first deliveries is observed once, at
// its earliest time, because that observation implies the later ones: with
// every subscriber seeing the same order, this keeps the operations near
// two per message.
func totalOrderOperations(ch *totalOrderChannel) *linearGroup {
	earliest := map[totalOrderKey]int64{}
	for _, ds := range ch.subscribers {
		for _, d := range ds {
			if t, ok := earliest[d.key]; !ok || d.time < t {
				earliest[d.key] = d.time
			}
		}
	}
	g := &linearGroup{}
	for _, k := range slices.SortedFunc(maps.Keys(ch.publishes), totalOrderCompareKeys) {
		c := ch.publishes[k]
		first, ok := earliest[k]
		if !ok {
			continue
		}
		ret := max(first, c.call)
		if c.outcome == history.Ok {
			ret = min(ret, c.ret)
		}
		meta := linearMeta{index: c.invoke, what: fmt.Sprintf("publish %s by %s", c.outcome, c.conn)}
		g.add(c.conn.process, porcupine.Operation{Input: totalOrderInput{key: k}, Call: c.call, Return: ret, Metadata: meta})
	}
	for _, op := range totalOrderObservations(ch) {
		g.add(-1, op)
	}
	totalOrderSegment(g)
	return g
}

// totalOrderObservations returns one observation per distinct pair of
// consecutive first deliveries of published messages, at its earliest time.
func totalOrderObservations(ch *totalOrderChannel) []porcupine.Operation {
	type pair struct {
		prev, key totalOrderKey
		hasPrev   bool
	}
	first := map[pair]totalOrderDelivery{}
	for _, ds := range ch.subscribers {
		var prev *totalOrderKey
		for _, d := range ds {
			if _, ok := ch.publishes[d.key]; !ok {
				continue
			}
			p := pair{key: d.key}
			if prev != nil {
				p.prev, p.hasPrev = *prev, true
			}
			if old, ok := first[p]; !ok || d.time < old.time {
				first[p] = d
			}
			prev = &d.key
		}
	}
	pairs := slices.SortedFunc(maps.Keys(first), func(a, b pair) int { return cmp.Compare(first[a].index, first[b].index) })
	ops := make([]porcupine.Operation, 0, len(pairs))
	for _, p := range pairs {
		d := first[p]
		in := totalOrderInput{observe: true, key: p.key, prev: p.prev, hasPrev: p.hasPrev}
		meta := linearMeta{index: d.index, what: "first delivery"}
		ops = append(ops, porcupine.Operation{Input: in, Call: d.time, Return: d.time, Metadata: meta})
	}
	return ops
}

// totalOrderSegment splits a channel's operations into segments that
// porcupine can check one by one, and sets each input's segment. A new
// segment begins with an append invoked after every earlier append
// returned: real time then puts every message of the earlier segments
// before it, so an observation needs only the segment of its message. One
// whose previous message lies in an earlier segment holds by real time, and
// loses its prev. One whose previous message lies in a later segment
// contradicts real time, and the segments between are merged so that
// porcupine finds the contradiction and draws it.
func totalOrderSegment(g *linearGroup) {
	segment, count := totalOrderNumberSegments(g)

	// reach[s] is the last segment that segment s must be checked with.
	reach := make([]int, count)
	for s := range reach {
		reach[s] = s
	}
	for _, op := range g.ops {
		in := op.Input.(totalOrderInput)
		if s, ps := segment[in.key], segment[in.prev]; in.observe && in.hasPrev && ps > s {
			reach[s] = max(reach[s], ps)
		}
	}
	merged := make([]int, count)
	id, until := -1, -1
	for s := range merged {
		if s > until {
			id++
		}
		until = max(until, reach[s])
		merged[s] = id
	}

	for i := range g.ops {
		in := g.ops[i].Input.(totalOrderInput)
		in.segment = merged[segment[in.key]]
		if in.hasPrev && merged[segment[in.prev]] < in.segment {
			in.hasPrev = false
		}
		g.ops[i].Input = in
	}
}

// totalOrderNumberSegments returns the segment of every appended message
// and the number of segments, before any merge.
func totalOrderNumberSegments(g *linearGroup) (map[totalOrderKey]int, int) {
	var appends []porcupine.Operation
	for _, op := range g.ops {
		if !op.Input.(totalOrderInput).observe {
			appends = append(appends, op)
		}
	}
	slices.SortStableFunc(appends, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	segment := map[totalOrderKey]int{}
	var stops []int64
	for _, op := range appends {
		if n := len(stops); n > 0 && op.Call <= stops[n-1] {
			stops[n-1] = max(stops[n-1], op.Return)
		} else {
			stops = append(stops, op.Return)
		}
		segment[op.Input.(totalOrderInput).key] = len(stops) - 1
	}
	return segment, len(stops)
}

// totalOrderPartition splits a channel's operations by segment, in segment
// order.
func totalOrderPartition(ops []porcupine.Operation) [][]porcupine.Operation {
	bySegment := map[int][]porcupine.Operation{}
	for _, op := range ops {
		s := op.Input.(totalOrderInput).segment
		bySegment[s] = append(bySegment[s], op)
	}
	var parts [][]porcupine.Operation
	for _, s := range slices.Sorted(maps.Keys(bySegment)) {
		parts = append(parts, bySegment[s])
	}
	return parts
}

func totalOrderCompareKeys(a, b totalOrderKey) int {
	return cmp.Or(cmp.Compare(a.process, b.process), cmp.Compare(a.epoch, b.epoch), cmp.Compare(a.seq, b.seq))
}

// totalOrderPorcupine checks every channel's log with porcupine and returns
// the channels it could not decide.
func totalOrderPorcupine(dir string, names []string, channels map[string]*totalOrderChannel, res *Result) []string {
	deadline := time.Now().Add(totalOrderBudget)
	var undecided []string
	for i, name := range names {
		g := totalOrderOperations(channels[name])
		parts := totalOrderPartition(g.ops)
		if largest := linearLargest(parts); largest > totalOrderMaxOps {
			res.Counts["porcupine-undecided"]++
			undecided = append(undecided, fmt.Sprintf("%s (%d operations in one segment, more than %d)", name, largest, totalOrderMaxOps))
			continue
		}
		linearAssignRows(g)
		timeout := max(time.Until(deadline)/time.Duration(len(names)-i), linearMinTimeout)
		model := totalOrderNewModel(len(parts))
		result, info := porcupine.CheckOperationsVerbose(model, g.ops, timeout)
		switch result {
		case porcupine.Ok:
			res.Counts["porcupine-ok"]++
		case porcupine.Illegal:
			totalOrderReport(dir, name, model, parts, info, res)
		default:
			res.Counts["porcupine-undecided"]++
			undecided = append(undecided, fmt.Sprintf("%s (timed out after %s)", name, timeout.Round(time.Millisecond)))
		}
	}
	return undecided
}

// totalOrderReport writes the visualization of an illegal channel into dir
// and adds its anomaly.
func totalOrderReport(dir, name string, model porcupine.Model, parts [][]porcupine.Operation, info porcupine.LinearizationInfo, res *Result) {
	see := "no run folder to write a visualization into"
	if dir != "" {
		file := "linear-order-" + linearUnsafe.ReplaceAllString(name, "_") + ".html"
		if err := porcupine.VisualizePath(model, info, filepath.Join(dir, file)); err != nil {
			see = fmt.Sprintf("writing the visualization %s failed: %v", file, err)
		} else {
			see = "see " + file
			res.Artifacts = append(res.Artifacts, file)
		}
	}
	a := Anomaly{
		Description: fmt.Sprintf("no order of the publishes of %s agrees with real time and with every subscriber's deliveries; %s", name, see),
		Channel:     name,
	}
	partials := info.PartialLinearizationsOperations()
	for p, ops := range parts {
		stuck, ok := linearStuck(ops, partials[p])
		if !ok {
			continue
		}
		meta := stuck.Metadata.(linearMeta)
		a.Description += fmt.Sprintf("; the first operation no order places is %s, history entry %d (%s)",
			totalOrderDescribe(stuck.Input, stuck.Output), meta.index, meta.what)
		a.Time, a.Ops = stuck.Call, []int{meta.index}
		break
	}
	res.AddAnomaly("not-linearizable", a)
}
