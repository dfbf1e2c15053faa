package checker

import (
	"bytes"
	"encoding/json"

	"github.com/wscluster/wscluster/history"
)

// pendingOp is an invoked operation that waits for its completion.
type pendingOp struct {
	// call is the operation's index in the checker's own list.
	call    int
	channel string
	value   json.RawMessage
}

func newPendingOp(call int, op *history.Op) pendingOp {
	return pendingOp{call: call, channel: op.Channel, value: op.Value}
}

// matchPending returns the position in pending, the operations of one
// process in invoke order, of the one that the completion op finishes. A
// completion repeats its invoke's channel and value, and a pipelining
// publisher has several publishes in flight whose results it records in
// any order, so the first operation with op's channel and value is taken.
// A publisher's data repeats on different channels, because its sequence
// numbers count per channel. Without a value, or without
// a match, the oldest is taken, as for a process with one operation in
// flight.
func matchPending(pending []pendingOp, op *history.Op) int {
	if len(op.Value) == 0 {
		return 0
	}
	for pos, p := range pending {
		if p.channel == op.Channel && bytes.Equal(p.value, op.Value) {
			return pos
		}
	}
	return 0
}
