package checker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wscluster/wscluster/history"
)

// pubsubHistory builds a history by hand, one entry at a time, with Index
// and Time set as a Recorder would.
type pubsubHistory struct {
	ops []history.Op
	now int64
}

var pubsubNodes = []string{"n1", "n2", "n3"}

const pubsubChannel = "ch"

// at moves the clock to ms milliseconds since the run started.
func (h *pubsubHistory) at(ms int64) *pubsubHistory {
	h.now = ms * int64(time.Millisecond)
	return h
}

func (h *pubsubHistory) tick(ms int64) {
	h.now += ms * int64(time.Millisecond)
}

func (h *pubsubHistory) add(op history.Op) int {
	op.Index = len(h.ops)
	if op.Time == 0 {
		op.Time = h.now
	}
	h.ops = append(h.ops, op)
	return op.Index
}

func (h *pubsubHistory) phase(name string) {
	h.add(history.Op{Type: history.Phase, F: name, Process: history.ProcessNemesis})
}

func (h *pubsubHistory) op(typ history.Type, f string, process, epoch int, node string) history.Op {
	return history.Op{Type: typ, F: f, Process: process, Epoch: epoch, Node: node}
}

func (h *pubsubHistory) connect(process, epoch int, node string) {
	h.add(h.op(history.Invoke, history.FConnect, process, 0, node))
	h.add(h.op(history.Ok, history.FConnect, process, epoch, node))
}

func (h *pubsubHistory) subscribe(process, epoch int, node, channel string) {
	for _, typ := range []history.Type{history.Invoke, history.Ok} {
		op := h.op(typ, history.FSubscribe, process, epoch, node)
		op.Channel = channel
		h.add(op)
	}
}

func (h *pubsubHistory) unsubscribe(process, epoch int, node, channel string) {
	for _, typ := range []history.Type{history.Invoke, history.Ok} {
		op := h.op(typ, history.FUnsubscribe, process, epoch, node)
		op.Channel = channel
		h.add(op)
	}
}

func (h *pubsubHistory) disconnect(process, epoch int, node string) {
	op := h.op(history.Event, history.FDisconnect, process, epoch, node)
	op.Error = "connection reset"
	h.add(op)
}

// pubsubData returns the payload a publisher connection sends as seq.
func pubsubData(process, epoch int, seq int64) json.RawMessage {
	b, err := json.Marshal(history.Payload{Process: process, Epoch: epoch, Seq: seq, Pad: "xx"})
	if err != nil {
		panic(err)
	}
	return b
}

// publish records a publish invoke and its completion of type outcome, and
// returns its data. An Ok gets msg_id "m<process>.<epoch>.<seq>", a Fail
// code 1005.
func (h *pubsubHistory) publish(process, epoch int, node, channel string, seq int64, outcome history.Type) json.RawMessage {
	data := pubsubData(process, epoch, seq)
	invoke := h.op(history.Invoke, history.FPublish, process, epoch, node)
	invoke.Channel, invoke.Value = channel, data
	h.add(invoke)
	h.tick(1)
	done := h.op(outcome, history.FPublish, process, epoch, node)
	done.Channel = channel
	switch outcome {
	case history.Ok:
		done.MsgID = pubsubMsgID(process, epoch, seq)
	case history.Fail:
		done.Code = 1005
	case history.Info:
		done.Error = "timed out"
	}
	h.add(done)
	return data
}

func pubsubMsgID(process, epoch int, seq int64) string {
	return fmt.Sprintf("m%d.%d.%d", process, epoch, seq)
}

func (h *pubsubHistory) message(process, epoch int, node, channel, msgID string, data json.RawMessage, redelivered bool) int {
	op := h.op(history.Event, history.FMessage, process, epoch, node)
	op.Channel, op.MsgID, op.Value, op.Redelivered = channel, msgID, data, redelivered
	return h.add(op)
}

func (h *pubsubHistory) fault(id, kind string, startMs, stopMs int64, nodes ...string) {
	f := &history.Fault{ID: id, Kind: kind, Detail: kind, Nodes: nodes, Mechanism: "test"}
	h.add(history.Op{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis,
		Time: startMs * int64(time.Millisecond), Fault: f})
	h.add(history.Op{Type: history.Nemesis, F: history.FFaultStop, Process: history.ProcessNemesis,
		Time: stopMs * int64(time.Millisecond), Fault: f})
}

// finish records the phases after main, one second apart.
func (h *pubsubHistory) finish() {
	for _, name := range []string{history.PhaseHeal, history.PhaseRecovery, history.PhaseFinal, history.PhaseDone} {
		h.tick(1000)
		h.phase(name)
	}
}

// pubsubSkip reports whether subscriber process sub misses seq of
// publisher process pub.
type pubsubSkip func(sub, pub int, seq int64) bool

// pubsubScenario records a run on three nodes up to the end of the main
// phase: publisher process i and subscriber process 10+i on node i, and
// every publisher publishing seqs 1 to publishes on one channel, one
// publisher every 10 ms from 1 s on. Each message reaches every
// subscriber 2 ms after the publish, unless skip returns true.
func pubsubScenario(publishes int, skip pubsubSkip) *pubsubHistory {
	h := &pubsubHistory{}
	h.phase(history.PhaseSetup)
	for i, node := range pubsubNodes {
		h.tick(1)
		h.connect(i, 1, node)
		h.connect(10+i, 1, node)
		h.subscribe(10+i, 1, node, pubsubChannel)
	}
	h.at(1000).phase(history.PhaseMain)
	for seq := int64(1); seq <= int64(publishes); seq++ {
		for pub, node := range pubsubNodes {
			h.tick(10)
			data := h.publish(pub, 1, node, pubsubChannel, seq, history.Ok)
			h.tick(1)
			for sub, subNode := range pubsubNodes {
				if skip == nil || !skip(10+sub, pub, seq) {
					h.message(10+sub, 1, subNode, pubsubChannel, pubsubMsgID(pub, 1, seq), data, false)
				}
			}
		}
	}
	return h
}

func pubsubRun(engine string) Run {
	return Run{Engine: engine, Nodes: pubsubNodes, PeerTimeout: time.Second, ReplayMaxAge: 60 * time.Second}
}

func checkDelivery(t *testing.T, h *pubsubHistory, engine string) Result {
	t.Helper()
	res := Delivery().Check(Input{Run: pubsubRun(engine), History: h.ops})
	t.Logf("%s: %s %v", res.Valid, res.Summary, res.Counts)
	return res
}

// pubsubExpect fails unless res has the verdict and the counts.
func pubsubExpect(t *testing.T, res Result, verdict Verdict, counts map[string]int) {
	t.Helper()
	if res.Valid != verdict {
		t.Errorf("verdict = %s, want %s", res.Valid, verdict)
	}
	pubsubExpectCounts(t, res, counts)
}

// pubsubExpectCounts fails unless res has the counts.
func pubsubExpectCounts(t *testing.T, res Result, counts map[string]int) {
	t.Helper()
	for kind, n := range counts {
		if got := res.Counts[kind]; got != n {
			t.Errorf("Counts[%q] = %d, want %d", kind, got, n)
		}
	}
}

// pubsubExpectAnomaly fails unless res has exactly n anomalies of kind and
// its first example names msgID.
func pubsubExpectAnomaly(t *testing.T, res Result, kind string, n int, msgID string) {
	t.Helper()
	if got := res.Counts[kind]; got != n {
		t.Errorf("Counts[%q] = %d, want %d", kind, got, n)
	}
	if len(res.Anomalies[kind]) == 0 {
		t.Fatalf("no %q example", kind)
	}
	a := res.Anomalies[kind][0]
	if a.MsgID != msgID {
		t.Errorf("%q example MsgID = %q, want %q", kind, a.MsgID, msgID)
	}
	if len(a.Ops) == 0 || a.Description == "" {
		t.Errorf("%q example lacks ops or description: %+v", kind, a)
	}
}

func TestDeliveryCleanRunValid(t *testing.T) {
	h := pubsubScenario(5, nil)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
	// 3 publishers x 5 seqs, each to 3 subscribers.
	pubsubExpectCounts(t, res, map[string]int{"expected": 45, "delivered": 45})
	if len(res.Anomalies) != 0 {
		t.Errorf("anomalies = %v, want none", res.Anomalies)
	}
}

func TestDeliveryDuplicate(t *testing.T) {
	h := pubsubScenario(3, nil)
	h.message(11, 1, "n2", pubsubChannel, pubsubMsgID(0, 1, 2), pubsubData(0, 1, 2), false)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Invalid {
		t.Errorf("verdict = %s, want invalid", res.Valid)
	}
	pubsubExpectAnomaly(t, res, "duplicated", 1, "m0.1.2")
}

func TestDeliveryRedeliveryNotDuplicate(t *testing.T) {
	h := pubsubScenario(3, nil)
	i := h.message(11, 1, "n2", pubsubChannel, pubsubMsgID(0, 1, 2), pubsubData(0, 1, 2), true)
	h.ops[i].QoS = 1
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
	if res.Counts["redelivered"] != 1 {
		t.Errorf("redelivered = %d, want 1", res.Counts["redelivered"])
	}
}

func TestDeliveryQoS1RepeatWithoutFlag(t *testing.T) {
	h := pubsubScenario(2, nil)
	i := h.message(12, 1, "n3", pubsubChannel, pubsubMsgID(1, 1, 1), pubsubData(1, 1, 1), false)
	h.ops[i].QoS = 1
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpectAnomaly(t, res, "duplicated", 1, "m1.1.1")
	if res.Counts["duplicated-qos1"] != 1 {
		t.Errorf("duplicated-qos1 = %d, want 1", res.Counts["duplicated-qos1"])
	}
}

func TestDeliveryUnexpectedMessages(t *testing.T) {
	cases := []struct {
		name  string
		kind  string
		msgID string
		data  json.RawMessage
	}{
		{"phantom", "phantom", "x1", pubsubData(7, 1, 1)},
		{"not JSON", "corrupted", "x2", json.RawMessage(`{"p":`)},
		{"not a payload", "corrupted", "x3", json.RawMessage(`"hello"`)},
		{"data altered", "corrupted", "m0.1.1", pubsubData(0, 1, 99)},
		{"other msg id", "msg-id-mismatch", "m9.9.9", pubsubData(2, 1, 2)},
		{"other channel", "phantom", "m0.1.1", pubsubData(0, 1, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := pubsubScenario(2, nil)
			channel := pubsubChannel
			if tc.name == "other channel" {
				channel = "other"
			}
			// Process 30 subscribed to nothing, so no message is also a
			// duplicate.
			h.message(30, 1, "n1", channel, tc.msgID, tc.data, false)
			h.finish()
			res := checkDelivery(t, h, "mesh")
			if res.Valid != Invalid {
				t.Errorf("verdict = %s, want invalid", res.Valid)
			}
			if res.Counts["unexpected"] != 1 {
				t.Errorf("unexpected = %d, want 1", res.Counts["unexpected"])
			}
			pubsubExpectAnomaly(t, res, tc.kind, 1, tc.msgID)
		})
	}
}

func TestDeliveryWhitespaceInDataMatches(t *testing.T) {
	h := pubsubScenario(1, func(sub, pub int, seq int64) bool { return sub == 10 && pub == 0 })
	spaced := json.RawMessage(strings.ReplaceAll(string(pubsubData(0, 1, 1)), ",", ", "))
	h.message(10, 1, "n1", pubsubChannel, pubsubMsgID(0, 1, 1), spaced, false)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
}

func TestDeliveryAfterFailedPublish(t *testing.T) {
	h := pubsubScenario(1, nil)
	data := h.publish(0, 1, "n1", pubsubChannel, 2, history.Fail)
	h.message(11, 1, "n2", pubsubChannel, "m-late", data, false)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Invalid {
		t.Errorf("verdict = %s, want invalid", res.Valid)
	}
	pubsubExpectAnomaly(t, res, "delivered-after-fail", 1, "m-late")
}

func TestDeliveryUnknownPublishMsgIDsAgree(t *testing.T) {
	h := pubsubScenario(1, nil)
	data := h.publish(0, 1, "n1", pubsubChannel, 2, history.Info)
	h.message(10, 1, "n1", pubsubChannel, "m-a", data, false)
	h.message(11, 1, "n2", pubsubChannel, "m-b", data, false)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpectAnomaly(t, res, "msg-id-mismatch", 1, "m-b")
}

func TestDeliveryLostOutsideFaults(t *testing.T) {
	h := pubsubScenario(4, func(sub, pub int, seq int64) bool { return sub == 12 && pub == 1 && seq == 3 })
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Invalid {
		t.Errorf("verdict = %s, want invalid", res.Valid)
	}
	pubsubExpectAnomaly(t, res, "lost", 1, "m1.1.3")
	pubsubExpectCounts(t, res, map[string]int{"expected": 36, "delivered": 35})
}

// pubsubLossAt returns a history where subscriber 12 (on n3) misses seq 3
// of publisher 1 (on n2), published at 1.094 s.
func pubsubLossAt() *pubsubHistory {
	return pubsubScenario(4, func(sub, pub int, seq int64) bool { return sub == 12 && pub == 1 && seq == 3 })
}

func TestDeliveryLossClassification(t *testing.T) {
	cases := []struct {
		name   string
		engine string
		kind   string
		start  int64
		stop   int64
		nodes  []string
		want   string
	}{
		{"kill of subscriber node", "mesh", "kill", 1050, 1200, []string{"n3"}, "lost-in-fault"},
		{"pause of publisher node", "redis", "pause", 1050, 1200, []string{"n2"}, "lost-in-fault"},
		{"redis kill", "redis", "redis-kill", 1050, 1200, []string{"redis"}, "lost-in-fault"},
		{"fault on other node", "mesh", "kill", 1050, 1200, []string{"n1"}, "lost"},
		{"fault long after", "mesh", "kill", 3000, 3200, []string{"n3"}, "lost"},
		{"within grace after stop", "redis", "partition", 500, 900, []string{"n2", "n3"}, "lost-in-fault"},
		{"just before start", "redis", "partition", 1900, 2000, []string{"n2", "n3"}, "lost-in-fault"},
		{"short mesh partition", "mesh", "partition", 1050, 1200, []string{"n2", "n3"}, "lost-link-fault"},
		{"short mesh latency", "mesh", "latency", 1050, 1200, []string{"n3"}, "lost-link-fault"},
		{"long mesh partition", "mesh", "partition", 1000, 62000, []string{"n2", "n3"}, "lost-in-fault"},
		{"short redis partition", "redis", "partition", 1050, 1200, []string{"n2", "n3"}, "lost-in-fault"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := pubsubLossAt()
			h.fault("f1", tc.kind, tc.start, tc.stop, tc.nodes...)
			h.finish()
			res := checkDelivery(t, h, tc.engine)
			pubsubExpectAnomaly(t, res, tc.want, 1, "m1.1.3")
			want := Valid
			if tc.want != "lost-in-fault" {
				want = Invalid
			}
			if res.Valid != want {
				t.Errorf("verdict = %s, want %s", res.Valid, want)
			}
		})
	}
}

func TestDeliveryMeshLinkFaultWithKill(t *testing.T) {
	// A kill overlapping the partition may lose the message for good, so
	// the loss is not held against the replay.
	h := pubsubLossAt()
	h.fault("f1", "partition", 1050, 1200, "n2", "n3")
	h.fault("f2", "kill", 1060, 1100, "n2")
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpectAnomaly(t, res, "lost-in-fault", 1, "m1.1.3")
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
}

func TestDeliveryEndedConnectionNotExpected(t *testing.T) {
	h := pubsubLossAt()
	h.at(1500)
	h.disconnect(12, 1, "n3")
	h.finish()
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
	if res.Counts["subscriptions-ended-early"] != 1 {
		t.Errorf("subscriptions-ended-early = %d, want 1", res.Counts["subscriptions-ended-early"])
	}
}

func TestDeliveryDisconnectAfterFinalStillExpected(t *testing.T) {
	h := pubsubLossAt()
	h.finish()
	h.disconnect(12, 1, "n3")
	res := checkDelivery(t, h, "mesh")
	pubsubExpectAnomaly(t, res, "lost", 1, "m1.1.3")
}

func TestDeliveryDropEndsConnection(t *testing.T) {
	h := pubsubLossAt()
	h.add(h.op(history.Invoke, history.FDrop, 12, 1, "n3"))
	h.add(h.op(history.Ok, history.FDrop, 12, 1, "n3"))
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpect(t, res, Valid, map[string]int{"lost": 0})
}

func TestDeliveryReconnectedSubscriber(t *testing.T) {
	// Subscriber 12 loses its connection, reconnects as epoch 2 and
	// subscribes again: publishes after that must reach epoch 2.
	h := pubsubScenario(1, nil)
	h.disconnect(12, 1, "n3")
	h.tick(5)
	h.connect(12, 2, "n1")
	h.subscribe(12, 2, "n1", pubsubChannel)
	h.tick(5)
	data := h.publish(0, 1, "n1", pubsubChannel, 2, history.Ok)
	h.message(10, 1, "n1", pubsubChannel, "m0.1.2", data, false)
	h.message(11, 1, "n2", pubsubChannel, "m0.1.2", data, false)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpectAnomaly(t, res, "lost", 1, "m0.1.2")
	if a := res.Anomalies["lost"][0]; !strings.Contains(a.Description, "process 12 epoch 2") {
		t.Errorf("lost example %q does not name process 12 epoch 2", a.Description)
	}
}

func TestDeliveryPublishBeforeSubscribeNotExpected(t *testing.T) {
	h := pubsubScenario(1, nil)
	h.connect(20, 1, "n2")
	data := h.publish(0, 1, "n1", pubsubChannel, 2, history.Ok)
	h.tick(1)
	h.subscribe(20, 1, "n2", pubsubChannel)
	for sub, node := range pubsubNodes {
		h.message(10+sub, 1, node, pubsubChannel, "m0.1.2", data, false)
	}
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpect(t, res, Valid, map[string]int{"lost": 0})
}

func TestDeliveryUnsubscribeEndsExpectation(t *testing.T) {
	h := pubsubScenario(1, nil)
	h.unsubscribe(12, 1, "n3", pubsubChannel)
	data := h.publish(0, 1, "n1", pubsubChannel, 2, history.Ok)
	h.message(10, 1, "n1", pubsubChannel, "m0.1.2", data, false)
	h.message(11, 1, "n2", pubsubChannel, "m0.1.2", data, false)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpect(t, res, Valid, map[string]int{"lost": 0})
}

func TestDeliveryUnknownPublishNotRequired(t *testing.T) {
	h := pubsubScenario(1, nil)
	h.publish(0, 1, "n1", pubsubChannel, 2, history.Info)
	h.finish()
	res := checkDelivery(t, h, "mesh")
	pubsubExpect(t, res, Valid, map[string]int{"publishes-info": 1, "lost": 0})
}

func TestDeliveryVerdictUnknown(t *testing.T) {
	noPublish := pubsubScenario(0, nil)
	noPublish.finish()

	noSubscription := &pubsubHistory{}
	noSubscription.phase(history.PhaseMain)
	noSubscription.connect(0, 1, "n1")
	noSubscription.publish(0, 1, "n1", pubsubChannel, 1, history.Ok)
	noSubscription.finish()

	noFinal := pubsubScenario(2, nil)

	allFailed := &pubsubHistory{}
	allFailed.connect(10, 1, "n1")
	allFailed.subscribe(10, 1, "n1", pubsubChannel)
	allFailed.publish(0, 1, "n1", pubsubChannel, 1, history.Fail)
	allFailed.finish()

	allGone := pubsubScenario(1, nil)
	for sub, node := range pubsubNodes {
		allGone.disconnect(10+sub, 1, node)
	}
	allGone.finish()

	for name, h := range map[string]*pubsubHistory{
		"no publish": noPublish, "no subscription": noSubscription, "no final phase": noFinal,
		"all publishes failed": allFailed, "all subscribers gone": allGone,
	} {
		t.Run(name, func(t *testing.T) {
			res := checkDelivery(t, h, "mesh")
			if res.Valid != Unknown {
				t.Errorf("verdict = %s, want unknown", res.Valid)
			}
		})
	}
}

func TestDeliveryNoFinalPhaseStillFindsDuplicates(t *testing.T) {
	h := pubsubScenario(1, nil)
	h.message(10, 1, "n1", pubsubChannel, "m0.1.1", pubsubData(0, 1, 1), false)
	res := checkDelivery(t, h, "mesh")
	if res.Valid != Invalid {
		t.Errorf("verdict = %s, want invalid", res.Valid)
	}
}

// TestPubsubCheckersOnRecordedHistory runs every pub/sub checker on a
// history in the Recorder's JSON lines format: a Redis pause during which
// the subscriber on n2 misses seq 2, and a QoS 1 redelivery of seq 3.
func TestPubsubCheckersOnRecordedHistory(t *testing.T) {
	ops, err := history.ReadFile("testdata/pubsub-redis-pause.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	run := Run{Engine: "redis", Nodes: []string{"n1", "n2"}, PeerTimeout: 3 * time.Second}
	checkers := []Checker{Delivery(), Order(), Latency(), Loops()}
	results := CheckAll(Input{Run: run, History: ops}, checkers)
	for _, r := range results.Checkers {
		t.Logf("%s %s: %s", r.Name, r.Valid, r.Summary)
	}
	if results.Valid != Valid {
		t.Errorf("combined verdict = %s, want valid", results.Valid)
	}
	delivery := results.Checkers[0]
	pubsubExpectCounts(t, delivery, map[string]int{"lost-in-fault": 1, "redelivered": 1, "expected": 6})

	// Without the fault entries the same loss is a violation.
	var noFaults []history.Op
	for _, op := range ops {
		if op.Type != history.Nemesis {
			noFaults = append(noFaults, op)
		}
	}
	res := Delivery().Check(Input{Run: run, History: noFaults})
	pubsubExpect(t, res, Invalid, map[string]int{"lost": 1, "lost-in-fault": 0})
}

// BenchmarkPubsubCheckers runs the pub/sub checkers on a history of about
// 600,000 entries: 120,000 publishes, each delivered to three subscribers.
func BenchmarkPubsubCheckers(b *testing.B) {
	h := pubsubScenario(40000, nil)
	h.finish()
	h.evenScrapes(40000, 0)
	in := Input{Run: pubsubRun("mesh"), History: h.ops}
	for _, c := range []Checker{Delivery(), Order(), Latency(), Loops()} {
		b.Run(c.Name(), func(b *testing.B) {
			for b.Loop() {
				if res := c.Check(in); res.Valid != Valid {
					b.Fatalf("%s: verdict %s: %s", c.Name(), res.Valid, res.Summary)
				}
			}
		})
	}
}

// pipelinedPublishes records three publishes of process 0 that are all in
// flight at once and complete in the order 3, 1, 2, each completion
// repeating its invoke's channel and data, as the pipelining workload
// records them. Every subscriber receives each one with the msg_id given by
// deliver. A fourth publish, on another channel with no subscriber,
// carries the same data as seq 1 and completes first.
func pipelinedPublishes(deliver func(seq int64) string) *pubsubHistory {
	h := pubsubScenario(0, nil)
	datas := map[int64]json.RawMessage{}
	for seq := int64(1); seq <= 3; seq++ {
		h.tick(1)
		invoke := h.op(history.Invoke, history.FPublish, 0, 1, "n1")
		invoke.Channel, invoke.Value = pubsubChannel, pubsubData(0, 1, seq)
		datas[seq] = invoke.Value
		h.add(invoke)
	}
	other := h.op(history.Invoke, history.FPublish, 0, 1, "n1")
	other.Channel, other.Value = "other", datas[1]
	h.add(other)
	h.tick(1)
	other.Type, other.MsgID = history.Ok, "m-other"
	h.add(other)
	for _, seq := range []int64{3, 1, 2} {
		h.tick(1)
		done := h.op(history.Ok, history.FPublish, 0, 1, "n1")
		done.Channel, done.Value, done.MsgID = pubsubChannel, datas[seq], pubsubMsgID(0, 1, seq)
		h.add(done)
	}
	for seq := int64(1); seq <= 3; seq++ {
		for sub, node := range pubsubNodes {
			h.message(10+sub, 1, node, pubsubChannel, deliver(seq), datas[seq], false)
		}
	}
	h.finish()
	return h
}

func TestDeliveryPipelinedPublishesPairByData(t *testing.T) {
	h := pipelinedPublishes(func(seq int64) string { return pubsubMsgID(0, 1, seq) })
	res := checkDelivery(t, h, "mesh")
	pubsubExpect(t, res, Valid, map[string]int{"expected": 9, "delivered": 9, "msg-id-mismatch": 0, "publishes-ok": 4})
}

func TestDeliveryPipelinedPublishMsgIDMismatch(t *testing.T) {
	// The message of seq 2 carries the msg_id that the publish of seq 1
	// got.
	h := pipelinedPublishes(func(seq int64) string {
		if seq == 2 {
			return pubsubMsgID(0, 1, 1)
		}
		return pubsubMsgID(0, 1, seq)
	})
	res := checkDelivery(t, h, "mesh")
	pubsubExpectAnomaly(t, res, "msg-id-mismatch", 3, pubsubMsgID(0, 1, 1))
}
