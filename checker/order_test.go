package checker

import (
	"testing"
)

func checkOrder(t *testing.T, h *pubsubHistory) Result {
	t.Helper()
	res := Order().Check(Input{Run: pubsubRun("mesh"), History: h.ops})
	t.Logf("%s: %s %v", res.Valid, res.Summary, res.Counts)
	return res
}

// pubsubDeliverSeqs records deliveries of publisher process 0 epoch 1 to
// subscriber process 10 epoch 1 in the given seq order.
func pubsubDeliverSeqs(h *pubsubHistory, seqs ...int64) {
	for _, seq := range seqs {
		h.tick(1)
		h.message(10, 1, "n1", pubsubChannel, pubsubMsgID(0, 1, seq), pubsubData(0, 1, seq), false)
	}
}

func TestOrderCleanRunValid(t *testing.T) {
	h := pubsubScenario(5, nil)
	h.finish()
	res := checkOrder(t, h)
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
	// 3 publishers x 3 subscribers.
	pubsubExpectCounts(t, res, map[string]int{"streams-checked": 9, "messages-checked": 45})
}

func TestOrderSwappedMessages(t *testing.T) {
	h := &pubsubHistory{}
	pubsubDeliverSeqs(h, 1, 2, 4, 3, 5)
	res := checkOrder(t, h)
	if res.Valid != Invalid {
		t.Errorf("verdict = %s, want invalid", res.Valid)
	}
	pubsubExpectAnomaly(t, res, "reordered", 1, "m0.1.3")
	a := res.Anomalies["reordered"][0]
	if len(a.Ops) != 2 || h.ops[a.Ops[0]].MsgID != "m0.1.4" || h.ops[a.Ops[1]].MsgID != "m0.1.3" {
		t.Errorf("reordered example ops = %v, want the deliveries of m0.1.4 then m0.1.3", a.Ops)
	}
}

func TestOrderEveryLateMessageCounted(t *testing.T) {
	h := &pubsubHistory{}
	pubsubDeliverSeqs(h, 1, 5, 2, 3, 4, 6)
	res := checkOrder(t, h)
	if got := res.Counts["reordered"]; got != 3 {
		t.Errorf("reordered = %d, want 3 (seqs 2, 3 and 4 after 5)", got)
	}
}

func TestOrderGapIsNotReorder(t *testing.T) {
	h := &pubsubHistory{}
	pubsubDeliverSeqs(h, 1, 2, 5, 6)
	res := checkOrder(t, h)
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
}

func TestOrderIgnoresRedeliveriesAndRepeats(t *testing.T) {
	h := &pubsubHistory{}
	pubsubDeliverSeqs(h, 1, 2, 3)
	h.message(10, 1, "n1", pubsubChannel, pubsubMsgID(0, 1, 1), pubsubData(0, 1, 1), true)
	// A repeat without the flag is a duplicate for Delivery, not a reorder.
	pubsubDeliverSeqs(h, 2, 4)
	res := checkOrder(t, h)
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
}

func TestOrderStreamsAreSeparate(t *testing.T) {
	// Seq 1 of another epoch, another channel or another subscriber after
	// seq 3 is in order: each is a stream of its own.
	h := &pubsubHistory{}
	pubsubDeliverSeqs(h, 1, 2, 3)
	h.message(10, 1, "n1", pubsubChannel, "m0.2.1", pubsubData(0, 2, 1), false)
	h.message(10, 1, "n1", "other", "o1", pubsubData(0, 1, 1), false)
	h.message(10, 2, "n2", pubsubChannel, pubsubMsgID(0, 1, 1), pubsubData(0, 1, 1), false)
	res := checkOrder(t, h)
	pubsubExpect(t, res, Valid, map[string]int{"streams": 4})
}

func TestOrderVerdictUnknown(t *testing.T) {
	single := &pubsubHistory{}
	pubsubDeliverSeqs(single, 1)
	single.message(11, 1, "n2", pubsubChannel, pubsubMsgID(0, 1, 2), pubsubData(0, 1, 2), false)

	redeliveredOnly := &pubsubHistory{}
	for _, seq := range []int64{1, 2} {
		redeliveredOnly.message(10, 1, "n1", pubsubChannel, pubsubMsgID(0, 1, seq), pubsubData(0, 1, seq), true)
	}

	for name, h := range map[string]*pubsubHistory{
		"empty": {}, "one message per stream": single, "only redeliveries": redeliveredOnly,
	} {
		t.Run(name, func(t *testing.T) {
			if res := checkOrder(t, h); res.Valid != Unknown {
				t.Errorf("verdict = %s, want unknown", res.Valid)
			}
		})
	}
}

func TestOrderSkipsCorruptData(t *testing.T) {
	h := &pubsubHistory{}
	pubsubDeliverSeqs(h, 1, 2)
	h.message(10, 1, "n1", pubsubChannel, "bad", []byte(`{"p":0,"e":1}`), false)
	res := checkOrder(t, h)
	pubsubExpect(t, res, Valid, map[string]int{"unparsed": 1})
}
