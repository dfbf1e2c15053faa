package checker

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/wscluster/wscluster/history"
)

// Kinds of delivery anomalies. The four kinds of an unexpected message are
// also counted together as "unexpected".
const (
	deliveryDuplicated         = "duplicated"
	deliveryPhantom            = "phantom"
	deliveryCorrupted          = "corrupted"
	deliveryMsgIDMismatch      = "msg-id-mismatch"
	deliveryDeliveredAfterFail = "delivered-after-fail"
	deliveryLost               = "lost"
	deliveryLostInFault        = "lost-in-fault"
	deliveryLostLinkFault      = "lost-link-fault"
)

// Defaults of the server, used when the run description leaves a duration
// at zero.
const (
	deliveryDefaultPeerTimeout  = 3 * time.Second
	deliveryDefaultReplayMaxAge = 60 * time.Second
)

// deliveryInFlightBefore widens a fault window backwards, because a publish
// invoked just before a fault began may still be on its way when it begins.
const deliveryInFlightBefore = int64(time.Second)

// Delivery returns the checker of three guarantees of the contract: no
// duplicates, no phantoms, and delivery to every subscriber that stayed
// connected. Losses inside fault windows are counted as "lost-in-fault" and
// do not fail the run, except with the mesh engine after only link faults
// shorter than the replay buffer's age limit, which the replay must close.
func Delivery() Checker { return deliveryChecker{} }

type deliveryChecker struct{}

func (deliveryChecker) Name() string { return "delivery" }

func (deliveryChecker) Check(in Input) Result {
	d := &deliveryRun{
		in:      in,
		pubs:    pubsubIndexPublishes(in.History),
		conns:   deliveryScanConnections(in.History),
		windows: Windows(in.History),
		seen:    map[deliverySeenKey]struct{}{},
		firstID: map[int]string{},
		res:     Result{Counts: map[string]int{}},
	}
	// Zero counts are written too, so the report shows what was checked.
	for _, kind := range []string{"expected", "delivered", deliveryLost, deliveryLostInFault,
		deliveryLostLinkFault, deliveryDuplicated, "unexpected", "redelivered"} {
		d.res.Counts[kind] = 0
	}
	d.countPublishes()
	d.res.Counts["subscriptions"] = len(d.conns.subs)

	for i := range in.History {
		op := &in.History[i]
		if op.Type == history.Event && op.F == history.FMessage {
			d.checkMessage(op)
		}
	}
	d.checkLosses()
	d.decide()
	return d.res
}

// pubsubPublish is one publish operation: its invoke and its completion.
type pubsubPublish struct {
	invoke   int // history index of the invoke
	complete int // history index of the completion, or -1 if none was recorded
	time     int64
	process  int
	epoch    int
	node     string
	channel  string
	// status is Ok, Fail or Info, or Invoke while no completion was recorded.
	status history.Type
	msgID  string // the msg_id of an Ok
	code   int    // the JSON-RPC error code of a Fail
}

// pubsubIndex holds every publish of a history, findable by its data and by
// the msg_id its Ok returned.
type pubsubIndex struct {
	pubs []pubsubPublish
	// byData maps pubsubDataKey(channel, data) to an index in pubs.
	byData  map[string]int
	byMsgID map[string]int
	// sameData counts publishes whose data repeated an earlier publish on
	// the same channel. The workload never sends such data, and a delivery
	// of it is attributed to the earlier publish.
	sameData int
}

// pubsubIndexPublishes pairs each publish invoke with its completion: the
// completion of the same process that carries the same data, because a
// pipelining publisher has several publishes in flight, or else the
// process's oldest publish in flight.
func pubsubIndexPublishes(ops []history.Op) pubsubIndex {
	idx := pubsubIndex{byData: map[string]int{}, byMsgID: map[string]int{}}
	inFlight := map[int][]pendingOp{} // process -> publishes in flight
	var buf bytes.Buffer
	for i := range ops {
		op := &ops[i]
		if op.F != history.FPublish {
			continue
		}
		switch op.Type {
		case history.Invoke:
			inFlight[op.Process] = append(inFlight[op.Process], newPendingOp(len(idx.pubs), op))
			idx.add(op, &buf)
		case history.Ok, history.Fail, history.Info:
			pending := inFlight[op.Process]
			if len(pending) == 0 {
				continue
			}
			pos := matchPending(pending, op)
			j := pending[pos].call
			inFlight[op.Process] = slices.Delete(pending, pos, pos+1)
			p := &idx.pubs[j]
			p.complete, p.status, p.code = op.Index, op.Type, op.Code
			if op.Type == history.Ok && op.MsgID != "" {
				p.msgID = op.MsgID
				idx.byMsgID[op.MsgID] = j
			}
		}
	}
	return idx
}

func (idx *pubsubIndex) add(op *history.Op, buf *bytes.Buffer) {
	idx.pubs = append(idx.pubs, pubsubPublish{
		invoke: op.Index, complete: -1, time: op.Time, process: op.Process, epoch: op.Epoch,
		node: op.Node, channel: op.Channel, status: history.Invoke,
	})
	key, err := pubsubDataKey(op.Channel, op.Value, buf)
	if err != nil {
		// The workload sends valid JSON, so this is a hand-built history;
		// the raw bytes still find an identical delivery.
		key = op.Channel + "\x00" + string(op.Value)
	}
	if _, dup := idx.byData[key]; dup {
		idx.sameData++
		return
	}
	idx.byData[key] = len(idx.pubs) - 1
}

// byChannel returns the indexes of the publishes of each channel, sorted by
// invoke time.
func (idx *pubsubIndex) byChannel() map[string][]int {
	m := map[string][]int{}
	for j := range idx.pubs {
		m[idx.pubs[j].channel] = append(m[idx.pubs[j].channel], j)
	}
	for _, list := range m {
		slices.SortStableFunc(list, func(a, b int) int {
			return cmp.Compare(idx.pubs[a].time, idx.pubs[b].time)
		})
	}
	return m
}

// lookup returns the publish whose data a message carries on its channel,
// or -1. It returns an error when the data is not JSON.
func (idx *pubsubIndex) lookup(op *history.Op, buf *bytes.Buffer) (int, error) {
	key, err := pubsubDataKey(op.Channel, op.Value, buf)
	if err != nil {
		return -1, err
	}
	j, ok := idx.byData[key]
	if !ok {
		return -1, nil
	}
	return j, nil
}

// pubsubDataKey returns channel and the compacted JSON of data joined by a
// NUL byte, which no channel name contains. Compacting makes the key
// independent of insignificant white space, which a JSON encoder may change.
func pubsubDataKey(channel string, data json.RawMessage, buf *bytes.Buffer) (string, error) {
	buf.Reset()
	buf.WriteString(channel)
	buf.WriteByte(0)
	if err := json.Compact(buf, data); err != nil {
		return "", fmt.Errorf("checker: data %.80q on channel %q is not valid JSON: %w", data, channel, err)
	}
	return buf.String(), nil
}

// deliveryConn is one client connection: a process's epoch.
type deliveryConn struct{ process, epoch int }

// deliverySub is one subscription of a connection to a channel, from its
// subscribe ok until its unsubscribe invoke.
type deliverySub struct {
	conn    deliveryConn
	channel string
	node    string
	start   int64
	stop    int64 // math.MaxInt64 while subscribed
	okIndex int
}

type deliverySubKey struct {
	conn    deliveryConn
	channel string
}

type deliveryPendingKey struct {
	process int
	f       string
}

// deliveryConns holds the subscriptions of a history and when each
// connection ended.
type deliveryConns struct {
	subs []deliverySub
	open map[deliverySubKey]int // index in subs of the open subscription
	end  map[deliveryConn]int64
	// epoch is the current epoch of each process, for entries without one.
	epoch   map[int]int
	invokes map[deliveryPendingKey]*history.Op
}

// deliveryScanConnections collects every subscription and the time each
// connection ended: its disconnect event, its drop, or at the latest the
// next connect of its process.
func deliveryScanConnections(ops []history.Op) deliveryConns {
	c := deliveryConns{
		open: map[deliverySubKey]int{}, end: map[deliveryConn]int64{},
		epoch: map[int]int{}, invokes: map[deliveryPendingKey]*history.Op{},
	}
	for i := range ops {
		op := &ops[i]
		switch {
		case op.Type == history.Invoke:
			c.invokes[deliveryPendingKey{op.Process, op.F}] = op
			c.onInvoke(op)
		case op.Type == history.Ok && op.F == history.FConnect:
			c.epoch[op.Process] = op.Epoch
		case op.Type == history.Ok && op.F == history.FSubscribe:
			c.onSubscribed(op, c.invokes[deliveryPendingKey{op.Process, op.F}])
		case op.Type == history.Event && op.F == history.FDisconnect:
			c.endConn(c.connOf(op), op.Time)
		}
	}
	return c
}

func (c *deliveryConns) onInvoke(op *history.Op) {
	switch op.F {
	case history.FConnect:
		if e, ok := c.epoch[op.Process]; ok {
			c.endConn(deliveryConn{op.Process, e}, op.Time)
		}
	case history.FDrop:
		c.endConn(c.connOf(op), op.Time)
	case history.FUnsubscribe:
		key := deliverySubKey{c.connOf(op), op.Channel}
		if j, ok := c.open[key]; ok {
			c.subs[j].stop = op.Time
			delete(c.open, key)
		}
	}
}

// onSubscribed opens a subscription unless one is open already: repeating
// a subscribe is harmless, and the first one sets the start.
func (c *deliveryConns) onSubscribed(op, invoke *history.Op) {
	channel, node := op.Channel, op.Node
	if invoke != nil {
		channel = cmp.Or(channel, invoke.Channel)
		node = cmp.Or(node, invoke.Node)
	}
	key := deliverySubKey{c.connOf(op), channel}
	if _, ok := c.open[key]; ok {
		return
	}
	c.open[key] = len(c.subs)
	c.subs = append(c.subs, deliverySub{
		conn: key.conn, channel: channel, node: node,
		start: op.Time, stop: math.MaxInt64, okIndex: op.Index,
	})
}

func (c *deliveryConns) connOf(op *history.Op) deliveryConn {
	if op.Epoch != 0 {
		return deliveryConn{op.Process, op.Epoch}
	}
	return deliveryConn{op.Process, c.epoch[op.Process]}
}

func (c *deliveryConns) endConn(conn deliveryConn, t int64) {
	if end, ok := c.end[conn]; !ok || t < end {
		c.end[conn] = t
	}
}

// deliverySeenKey identifies a message on a connection: by its publish
// when its data matched one, else by its msg_id (or its data without one).
type deliverySeenKey struct {
	conn    deliveryConn
	channel string
	pub     int
	id      string
}

// deliveryRun is the state of one Delivery check.
type deliveryRun struct {
	in      Input
	pubs    pubsubIndex
	conns   deliveryConns
	windows []Window
	// seen holds every message a connection received; a key with pub >= 0
	// is a delivery of that publish.
	seen map[deliverySeenKey]struct{}
	// firstID is the msg_id first delivered for a publish whose Ok carried
	// none, so every later delivery of it must carry the same.
	firstID map[int]string
	buf     bytes.Buffer
	// lossUnchecked is set when the history cannot show losses.
	lossUnchecked string
	res           Result
}

func (d *deliveryRun) countPublishes() {
	c := d.res.Counts
	c["publishes"] = len(d.pubs.pubs)
	for _, p := range d.pubs.pubs {
		switch p.status {
		case history.Ok:
			c["publishes-ok"]++
		case history.Fail:
			c["publishes-fail"]++
		default:
			c["publishes-info"]++
		}
	}
	if d.pubs.sameData > 0 {
		c["publishes-same-data"] = d.pubs.sameData
	}
}

// checkMessage checks one message event for duplicates and phantoms and
// marks it as delivered to its connection.
func (d *deliveryRun) checkMessage(op *history.Op) {
	d.res.Counts["messages"]++
	if op.Redelivered {
		d.res.Counts["redelivered"]++
	}
	pub := d.matchMessage(op)

	// A repeat is a duplicate unless the server marked it as a QoS 1
	// redelivery.
	key := deliverySeenKey{conn: deliveryConn{op.Process, op.Epoch}, channel: op.Channel, pub: pub}
	if pub < 0 {
		key.id = cmp.Or(op.MsgID, "\x00"+string(op.Value))
	}
	if _, dup := d.seen[key]; !dup {
		d.seen[key] = struct{}{}
		return
	}
	if op.Redelivered {
		return
	}
	if op.QoS == 1 {
		d.res.Counts["duplicated-qos1"]++
	}
	d.res.AddAnomaly(deliveryDuplicated, Anomaly{
		Description: fmt.Sprintf("process %d epoch %d on %s received msg %s on %s again without redelivered=true",
			op.Process, op.Epoch, op.Node, op.MsgID, op.Channel),
		Time: op.Time, Ops: d.opsOf(pub, op.Index), Node: op.Node, Channel: op.Channel, MsgID: op.MsgID,
	})
}

// matchMessage returns the publish a message delivers, or -1, and reports
// the message as unexpected when it delivers no publish of its channel,
// a failed one, or carries another msg_id than the publish.
func (d *deliveryRun) matchMessage(op *history.Op) int {
	j, err := d.pubs.lookup(op, &d.buf)
	if err != nil {
		d.unexpected(deliveryCorrupted, op, -1, "data is not JSON")
		return -1
	}
	if j < 0 {
		d.unmatched(op)
		return -1
	}
	// A Fail, with 1005 or any other code, means the publish was not taken,
	// so nothing may deliver it.
	p := &d.pubs.pubs[j]
	if p.status == history.Fail {
		d.unexpected(deliveryDeliveredAfterFail, op, j,
			fmt.Sprintf("its publish by process %d failed with code %d", p.process, p.code))
		return j
	}
	want := p.msgID
	if want == "" {
		want = cmp.Or(d.firstID[j], op.MsgID)
		d.firstID[j] = want
	}
	if op.MsgID != want {
		d.unexpected(deliveryMsgIDMismatch, op, j, fmt.Sprintf("its publish has msg_id %s", want))
	}
	return j
}

// unmatched reports a message whose data matches no publish of its channel:
// corrupted when it is no workload payload or when its msg_id names a
// publish of the channel with other data, else a phantom.
func (d *deliveryRun) unmatched(op *history.Op) {
	if _, err := history.ParsePayload(op.Value); err != nil {
		d.unexpected(deliveryCorrupted, op, -1, "data is not a workload payload")
		return
	}
	if k, ok := d.pubs.byMsgID[op.MsgID]; ok && d.pubs.pubs[k].channel == op.Channel {
		d.unexpected(deliveryCorrupted, op, k, "data differs from the publish with this msg_id")
		return
	}
	d.unexpected(deliveryPhantom, op, -1, "data matches no publish on this channel")
}

func (d *deliveryRun) unexpected(kind string, op *history.Op, pub int, reason string) {
	d.res.Counts["unexpected"]++
	d.res.AddAnomaly(kind, Anomaly{
		Description: fmt.Sprintf("process %d epoch %d on %s received msg %s on %s with data %.120s: %s",
			op.Process, op.Epoch, op.Node, op.MsgID, op.Channel, op.Value, reason),
		Time: op.Time, Ops: d.opsOf(pub, op.Index), Node: op.Node, Channel: op.Channel, MsgID: op.MsgID,
	})
}

// opsOf returns the history indexes of a publish's invoke and completion,
// when pub >= 0, followed by extra.
func (d *deliveryRun) opsOf(pub int, extra ...int) []int {
	var ops []int
	if pub >= 0 {
		p := &d.pubs.pubs[pub]
		ops = append(ops, p.invoke)
		if p.complete >= 0 {
			ops = append(ops, p.complete)
		}
	}
	return append(ops, extra...)
}

// checkLosses checks delivery: every subscription whose connection lasted
// until the final phase receives every publish of its channel that
// completed ok and was invoked after the subscribe ok.
func (d *deliveryRun) checkLosses() {
	finalStart, ok := PhaseTimes(d.in.History)[history.PhaseFinal]
	if !ok {
		d.lossUnchecked = "the history has no final phase, so the recovery wait may not have ended"
		return
	}
	byChannel := d.pubs.byChannel()
	for i := range d.conns.subs {
		s := &d.conns.subs[i]
		if end, ok := d.conns.end[s.conn]; ok && end < finalStart {
			d.res.Counts["subscriptions-ended-early"]++
			continue
		}
		list := byChannel[s.channel]
		first := sort.Search(len(list), func(k int) bool { return d.pubs.pubs[list[k]].time > s.start })
		for _, j := range list[first:] {
			p := &d.pubs.pubs[j]
			if p.time >= s.stop {
				break
			}
			if p.status == history.Ok {
				d.checkReceived(s, j)
			}
		}
	}
}

func (d *deliveryRun) checkReceived(s *deliverySub, pub int) {
	d.res.Counts["expected"]++
	if _, ok := d.seen[deliverySeenKey{conn: s.conn, channel: s.channel, pub: pub}]; ok {
		d.res.Counts["delivered"]++
		return
	}
	p := &d.pubs.pubs[pub]
	d.res.AddAnomaly(d.classifyLoss(p, s), Anomaly{
		Description: fmt.Sprintf("publish %s by process %d epoch %d on %s at %v was not delivered to process %d epoch %d on %s, subscribed at %v",
			p.msgID, p.process, p.epoch, p.node, time.Duration(p.time), s.conn.process, s.conn.epoch, s.node, time.Duration(s.start)),
		Time: p.time, Ops: d.opsOf(pub, s.okIndex), Node: s.node, Channel: s.channel, MsgID: p.msgID,
	})
}

// classifyLoss names a loss "lost" outside fault windows that touch the
// publisher's or the subscriber's node, else "lost-in-fault". With the mesh
// engine, a loss under only short link faults is "lost-link-fault" instead,
// because the replay buffer must close such gaps.
func (d *deliveryRun) classifyLoss(p *pubsubPublish, s *deliverySub) string {
	grace := int64(2 * cmp.Or(d.in.Run.PeerTimeout, deliveryDefaultPeerTimeout))
	if !InWindow(d.windows, p.time, deliveryInFlightBefore, grace, p.node, s.node) {
		return deliveryLost
	}
	maxAge := int64(cmp.Or(d.in.Run.ReplayMaxAge, deliveryDefaultReplayMaxAge))
	if d.in.Run.Engine == "mesh" && deliveryOnlyShortLinkFaults(d.windows, p.time, grace, maxAge, p.node, s.node) {
		return deliveryLostLinkFault
	}
	return deliveryLostInFault
}

// deliveryOnlyShortLinkFaults reports whether every fault window around t
// that touches one of the nodes cuts or degrades links only, with no node
// or Redis stopped, and lasted less than maxAge.
func deliveryOnlyShortLinkFaults(ws []Window, t, grace, maxAge int64, nodes ...string) bool {
	for _, w := range ws {
		if t < w.Start-deliveryInFlightBefore || t > w.Stop+grace {
			continue
		}
		if !slices.ContainsFunc(nodes, w.Touches) {
			continue
		}
		switch w.Fault.Kind {
		case history.FaultPartition, history.FaultLatency, history.FaultReset:
		default:
			return false
		}
		if w.Stop-w.Start >= maxAge {
			return false
		}
	}
	return true
}

// decide sets the verdict and the summary from the counts.
func (d *deliveryRun) decide() {
	c := d.res.Counts
	violations := c[deliveryDuplicated] + c["unexpected"] + c[deliveryLost] + c[deliveryLostLinkFault]
	tally := fmt.Sprintf("%d of %d expected deliveries lost outside fault windows, %d lost under short link faults, %d lost in fault windows; %d duplicated, %d unexpected",
		c[deliveryLost], c["expected"], c[deliveryLostLinkFault], c[deliveryLostInFault], c[deliveryDuplicated], c["unexpected"])
	switch {
	case violations > 0:
		d.res.Valid, d.res.Summary = Invalid, tally
	case c["publishes-ok"] == 0:
		d.res.Valid, d.res.Summary = Unknown, "no publish completed ok, so delivery was not tested"
	case c["subscriptions"] == 0:
		d.res.Valid, d.res.Summary = Unknown, "no subscription succeeded, so delivery was not tested"
	case d.lossUnchecked != "":
		d.res.Valid, d.res.Summary = Unknown, "losses not checked: "+d.lossUnchecked+"; "+tally
	case c["expected"] == 0:
		d.res.Valid, d.res.Summary = Unknown, "no subscriber stayed connected until the final phase while a publish completed ok, so no delivery was required"
	default:
		d.res.Valid, d.res.Summary = Valid, tally
	}
}
