package checker

import (
	"fmt"

	"github.com/wscluster/wscluster/history"
)

// Order returns the checker of the contract's per-publisher order: each
// subscriber connection receives the messages of one publisher connection on one
// channel in increasing seq order. QoS 1 redeliveries are ignored, and a
// gap in the seqs is a loss for Delivery, not an order anomaly.
func Order() Checker { return orderChecker{} }

type orderChecker struct{}

func (orderChecker) Name() string { return "order" }

// orderStreamKey is the messages of one publisher connection on one channel
// as one subscriber connection receives them.
type orderStreamKey struct {
	subProcess, subEpoch int
	channel              string
	pubProcess, pubEpoch int
}

// orderStream is the state of one stream: its first deliveries so far.
type orderStream struct {
	id       int
	received int
	// maxSeq is the highest seq received, with its message.
	maxSeq   int64
	maxMsgID string
	maxIndex int
}

type orderSeenKey struct {
	stream int
	seq    int64
}

func (orderChecker) Check(in Input) Result {
	res := Result{Counts: map[string]int{"reordered": 0}}
	streams := map[orderStreamKey]*orderStream{}
	// seen holds the seqs each stream received, so that a repeated message,
	// which Delivery reports as a duplicate, is not also a reorder.
	seen := map[orderSeenKey]struct{}{}
	for i := range in.History {
		op := &in.History[i]
		if op.Type != history.Event || op.F != history.FMessage || op.Redelivered {
			continue
		}
		p, err := history.ParsePayload(op.Value)
		if err != nil {
			// Delivery reports data that is no workload payload.
			res.Counts["unparsed"]++
			continue
		}
		key := orderStreamKey{op.Process, op.Epoch, op.Channel, p.Process, p.Epoch}
		s := streams[key]
		if s == nil {
			s = &orderStream{id: len(streams)}
			streams[key] = s
		}
		if _, dup := seen[orderSeenKey{s.id, p.Seq}]; dup {
			continue
		}
		seen[orderSeenKey{s.id, p.Seq}] = struct{}{}
		orderReceive(&res, s, op, p)
	}
	orderDecide(&res, streams)
	return res
}

// orderReceive adds one first delivery to its stream and reports it when a
// higher seq of the stream arrived before it.
func orderReceive(res *Result, s *orderStream, op *history.Op, p history.Payload) {
	s.received++
	res.Counts["messages-checked"]++
	if s.received > 1 && p.Seq < s.maxSeq {
		res.AddAnomaly("reordered", Anomaly{
			Description: fmt.Sprintf("process %d epoch %d on %s received seq %d (msg %s) of publisher process %d epoch %d on %s after seq %d (msg %s)",
				op.Process, op.Epoch, op.Node, p.Seq, op.MsgID, p.Process, p.Epoch, op.Channel, s.maxSeq, s.maxMsgID),
			Time: op.Time, Ops: []int{s.maxIndex, op.Index}, Node: op.Node, Channel: op.Channel, MsgID: op.MsgID,
		})
		return
	}
	s.maxSeq, s.maxMsgID, s.maxIndex = p.Seq, op.MsgID, op.Index
}

func orderDecide(res *Result, streams map[orderStreamKey]*orderStream) {
	res.Counts["streams"] = len(streams)
	for _, s := range streams {
		if s.received >= 2 {
			res.Counts["streams-checked"]++
		}
	}
	switch {
	case res.Counts["reordered"] > 0:
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("%d of %d messages arrived after a later message of the same publisher connection",
			res.Counts["reordered"], res.Counts["messages-checked"])
	case res.Counts["streams-checked"] == 0:
		res.Valid = Unknown
		res.Summary = "no subscriber received two messages of one publisher connection on one channel, so order was not tested"
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("%d messages in %d publisher-to-subscriber streams arrived in publish order",
			res.Counts["messages-checked"], res.Counts["streams-checked"])
	}
}
