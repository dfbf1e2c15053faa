package report

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

// runBuilder records a hand-built history the way the suite's Recorder
// does: Index is the position and Time only grows.
type runBuilder struct {
	ops []history.Op
	now int64
}

func (b *runBuilder) at(t time.Duration) *runBuilder {
	b.now = max(b.now, int64(t))
	return b
}

func (b *runBuilder) add(op history.Op) history.Op {
	op.Index = len(b.ops)
	op.Time = b.now
	b.ops = append(b.ops, op)
	return op
}

func boolPtr(v bool) *bool { return &v }

// sampleRun builds a 12-second history on nodes n1..n3. Two subscribers
// receive from one publisher, which publishes every 20 ms. A presence
// observer per node reads members every 250 ms, and readiness probes run
// every 250 ms. A partition isolates n3 from 3 s to 5 s, so n3 is not
// ready and its roster shrinks. A kill of n2 from 6 s to 7.5 s leaves its
// probes without a response and one publish with unknown outcome whose
// message still arrives.
func sampleRun(t *testing.T) []history.Op {
	t.Helper()
	b := &runBuilder{}
	nodes := []string{"n1", "n2", "n3"}
	partition := &history.Fault{ID: "f1", Kind: "partition", Detail: "isolate [n3] | [n1 n2]", Nodes: []string{"n1", "n2", "n3"},
		Links: [][2]string{{"n1", "n3"}, {"n2", "n3"}}, Mechanism: "tcp-proxy"}
	kill := &history.Fault{ID: "f2", Kind: "kill", Detail: "kill n2", Nodes: []string{"n2"}, Mechanism: "SIGKILL"}

	// Setup: subscribers 0 (n1) and 1 (n3) subscribe; publisher 2 on n2;
	// observers 10, 11, 12 join on their node.
	b.add(history.Op{Type: history.Phase, F: history.PhaseSetup})
	placement := []struct {
		process int
		node    string
	}{{0, "n1"}, {1, "n3"}, {2, "n2"}, {10, "n1"}, {11, "n2"}, {12, "n3"}}
	for _, pl := range placement {
		b.add(history.Op{Type: history.Invoke, F: history.FConnect, Process: pl.process, Node: pl.node})
		b.add(history.Op{Type: history.Ok, F: history.FConnect, Process: pl.process, Node: pl.node, Epoch: 1})
	}
	for _, pl := range placement[:2] {
		b.add(history.Op{Type: history.Invoke, F: history.FSubscribe, Process: pl.process, Node: pl.node, Epoch: 1, Channel: "c1"})
		b.add(history.Op{Type: history.Ok, F: history.FSubscribe, Process: pl.process, Node: pl.node, Epoch: 1, Channel: "c1"})
	}
	b.at(time.Second).add(history.Op{Type: history.Phase, F: history.PhaseMain})

	seq := int64(0)
	for ms := 1000; ms < 12000; ms += 20 {
		now := time.Duration(ms) * time.Millisecond
		b.at(now)
		switch {
		case ms == 3000:
			b.add(history.Op{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis, Fault: partition})
		case ms == 5000:
			b.add(history.Op{Type: history.Nemesis, F: history.FFaultStop, Process: history.ProcessNemesis, Fault: partition})
		case ms == 6000:
			b.add(history.Op{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis, Fault: kill})
		case ms == 7500:
			b.add(history.Op{Type: history.Nemesis, F: history.FFaultStop, Process: history.ProcessNemesis, Fault: kill})
		case ms == 8000:
			b.add(history.Op{Type: history.Phase, F: history.PhaseHeal})
		case ms == 8500:
			b.add(history.Op{Type: history.Phase, F: history.PhaseRecovery})
		case ms == 11500:
			b.add(history.Op{Type: history.Phase, F: history.PhaseFinal})
		}

		// Publishes run in the main phase only.
		if ms < 8000 {
			seq++
			samplePublish(b, now, seq, ms)
		}
		if ms%250 == 0 {
			for i, node := range nodes {
				sampleProbe(b, node, ms)
				sampleMembers(b, 10+i, node, ms)
			}
		}
	}
	b.at(12 * time.Second).add(history.Op{Type: history.Phase, F: history.PhaseDone})
	return b.ops
}

// samplePublish records one publish by process 2 and its deliveries. While
// n2 is killed the publish ends info; the one at 6.5 s still arrives, and
// the others are lost. While n3 is isolated, subscriber 1 on n3 misses it.
func samplePublish(b *runBuilder, now time.Duration, seq int64, ms int) {
	value, _ := json.Marshal(history.Payload{Process: 2, Epoch: 1, Seq: seq, Pad: "xxxxxxxx"})
	b.add(history.Op{Type: history.Invoke, F: history.FPublish, Process: 2, Node: "n2", Epoch: 1, Channel: "c1", Value: value})
	killed := ms >= 6000 && ms < 7500
	msgID := ""
	if killed {
		b.at(now + 15*time.Millisecond).add(history.Op{Type: history.Info, F: history.FPublish, Process: 2, Node: "n2", Epoch: 1, Channel: "c1", Error: "timeout"})
		if ms != 6500 {
			return
		}
	} else {
		msgID = fmt.Sprintf("m%d", seq)
		b.at(now + 2*time.Millisecond).add(history.Op{Type: history.Ok, F: history.FPublish, Process: 2, Node: "n2", Epoch: 1, Channel: "c1", MsgID: msgID})
	}
	b.at(now + 4*time.Millisecond).add(history.Op{Type: history.Event, F: history.FMessage, Process: 0, Node: "n1", Epoch: 1, Channel: "c1", MsgID: msgID, Value: value})
	if ms < 3000 || ms >= 5000 {
		b.at(now + 6*time.Millisecond).add(history.Op{Type: history.Event, F: history.FMessage, Process: 1, Node: "n3", Epoch: 1, Channel: "c1", MsgID: msgID, Value: value})
	}
	b.at(now)
}

func sampleProbe(b *runBuilder, node string, ms int) {
	op := history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe, Node: node, Ready: boolPtr(true)}
	switch {
	case node == "n3" && ms >= 3000 && ms < 5000:
		op.Ready = boolPtr(false)
	case node == "n2" && ms >= 6000 && ms < 7500:
		op.Ready, op.Error = nil, "connection refused"
	}
	b.add(op)
}

// sampleMembers records a members read of the observer on node: three
// members, one while n3 is isolated, none while n2 is down.
func sampleMembers(b *runBuilder, process int, node string, ms int) {
	if node == "n2" && ms >= 6000 && ms < 7500 {
		return
	}
	members := []history.Member{{Member: "obs-n1-10"}, {Member: "obs-n2-11"}, {Member: "obs-n3-12"}}
	if node == "n3" && ms >= 3000 && ms < 5000 {
		members = members[2:]
	}
	b.add(history.Op{Type: history.Invoke, F: history.FMembers, Process: process, Node: node, Epoch: 1, Channel: "presence-1"})
	b.add(history.Op{Type: history.Ok, F: history.FMembers, Process: process, Node: node, Epoch: 1, Channel: "presence-1", Members: members})
}

func sampleMeta() Meta {
	return Meta{
		RunID:      "20260301-101500-mesh-partition",
		Seed:       42,
		Command:    "wscluster-suite run --engine mesh --nemesis partition,kill --duration 7s --seed 42",
		Topology:   "local",
		Engine:     "mesh",
		Nodes:      3,
		Workload:   "pubsub",
		Nemesis:    []string{"partition", "kill"},
		Duration:   7 * time.Second,
		Started:    time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC),
		Finished:   time.Date(2026, 3, 1, 10, 15, 14, 0, time.UTC),
		NodeLogs:   map[string]string{"n1": "logs/n1.log", "n2": "logs/n2.log", "n3": "logs/n3.log"},
		Mechanisms: map[string]string{"partition": "tcp-proxy", "kill": "SIGKILL"},
		Extra:      map[string]string{"peer-timeout": "1s"},
	}
}

func validResults() checker.Results {
	return checker.Results{Valid: checker.Valid, Checkers: []checker.Result{
		{Name: "delivery", Valid: checker.Valid, Summary: "0 of 600 expected deliveries lost outside fault windows",
			Counts: map[string]int{"expected": 600, "lost-outside": 0}, Stats: map[string]float64{"latency-p99-ms": 6.25}},
		{Name: "presence", Valid: checker.Valid, Summary: "rosters converged on every node after the heal",
			Counts: map[string]int{"reads": 120}},
	}}
}
