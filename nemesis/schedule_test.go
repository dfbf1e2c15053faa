package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// recordingTopology is an in-memory topology that records every fault call
// and tracks what a real one would: killed and paused processes, cut and
// degraded links. It reports calls that a real topology could not carry
// out, such as pausing a killed node, as conflicts.
type recordingTopology struct {
	nodes []topology.Node
	links []topology.Link

	mu        sync.Mutex
	calls     []string
	state     map[string]string // "killed" or "paused"
	cut       []topology.Link
	degraded  []topology.Link
	conflicts []string
	// fail, when set, can make a call fail: it gets the method and target.
	fail func(method, target string) error
}

func newRecordingTopology(engine string, n int) *recordingTopology {
	t := &recordingTopology{state: map[string]string{}}
	ids := nodeIDs(n)
	for _, id := range ids {
		t.nodes = append(t.nodes, topology.Node{ID: id})
	}
	t.links = meshLinks(ids)
	if engine == EngineRedis {
		t.links = starLinks(ids)
	}
	return t
}

func (t *recordingTopology) Start(context.Context) error { return nil }
func (t *recordingTopology) Close(context.Context) error { return nil }
func (t *recordingTopology) Nodes() []topology.Node      { return t.nodes }
func (t *recordingTopology) Links() []topology.Link      { return slices.Clone(t.links) }

// call records a call and returns the error fail gives for it.
func (t *recordingTopology) call(method, target string) error {
	t.calls = append(t.calls, method+" "+target)
	if t.fail != nil {
		return t.fail(method, target)
	}
	return nil
}

// process moves a process from state from to state to.
func (t *recordingTopology) process(method, node, from, to string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.call(method, node); err != nil {
		return "", err
	}
	if t.state[node] != from {
		t.conflicts = append(t.conflicts, fmt.Sprintf("%s %s while %q", method, node, t.state[node]))
		return "", fmt.Errorf("%s %s: process is %q", method, node, t.state[node])
	}
	t.state[node] = to
	return "fake-" + method, nil
}

func (t *recordingTopology) Kill(_ context.Context, node string) (string, error) {
	return t.process("kill", node, "", "killed")
}

func (t *recordingTopology) Restart(_ context.Context, node string) (string, error) {
	return t.process("restart", node, "killed", "")
}

func (t *recordingTopology) Pause(_ context.Context, node string) (string, error) {
	return t.process("pause", node, "", "paused")
}

func (t *recordingTopology) Resume(_ context.Context, node string) (string, error) {
	return t.process("resume", node, "paused", "")
}

func (t *recordingTopology) Partition(_ context.Context, links []topology.Link) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.call("partition", formatLinks(links)); err != nil {
		return "", err
	}
	t.cut = append(t.cut, links...)
	return "fake-partition", nil
}

func (t *recordingTopology) Degrade(_ context.Context, links []topology.Link, f topology.LinkFault) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lossOnly := f.Latency == 0 && f.Loss >= MinLossPercent/100.0 && f.Loss <= MaxLossPercent/100.0
	if !lossOnly && (f.Latency < MinLatency || f.Latency > MaxLatency || f.Jitter > f.Latency/2) {
		t.conflicts = append(t.conflicts, fmt.Sprintf("degrade with latency %v jitter %v", f.Latency, f.Jitter))
	}
	if err := t.call("degrade", formatLinks(links)); err != nil {
		return "", err
	}
	t.degraded = append(t.degraded, links...)
	return "fake-degrade", nil
}

func (t *recordingTopology) ResetConnections(_ context.Context, links []topology.Link) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return "fake-reset", t.call("reset", formatLinks(links))
}

func (t *recordingTopology) HealNetwork(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cut, t.degraded = nil, nil
	return t.call("heal-network", "")
}

// leftovers describes every fault still in place.
func (t *recordingTopology) leftovers() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var left []string
	for node, s := range t.state {
		if s != "" {
			left = append(left, node+" "+s)
		}
	}
	if len(t.cut) > 0 || len(t.degraded) > 0 {
		left = append(left, fmt.Sprintf("cut %v degraded %v", t.cut, t.degraded))
	}
	return left
}

func (t *recordingTopology) callLog() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.calls)
}

func (t *recordingTopology) conflictLog() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.conflicts)
}

// fastConfig keeps scheduler tests short: rounds of a few milliseconds.
func fastConfig(t *testing.T, list, engine string, maxConcurrent int) Config {
	t.Helper()
	faults, err := Parse(list, engine)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Faults: faults, Interval: 2 * time.Millisecond, FaultDuration: 4 * time.Millisecond, MaxConcurrent: maxConcurrent}
}

// run is one nemesis run on a recording topology.
type run struct {
	topo *recordingTopology
	rec  *history.Recorder
	nem  *Nemesis
	stop context.CancelFunc
	done chan error
}

func startRun(cfg Config, topo *recordingTopology, seed uint64) *run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{topo: topo, rec: history.NewRecorder(nil), stop: cancel, done: make(chan error, 1)}
	r.nem = New(cfg, topo, r.rec, rand.New(rand.NewPCG(seed, 1)), slog.New(slog.DiscardHandler))
	go func() { r.done <- r.nem.Run(ctx) }()
	return r
}

// waitFor polls until cond holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func nemesisOps(rec *history.Recorder) []history.Op {
	var ops []history.Op
	for _, op := range rec.Ops() {
		if op.Type == history.Nemesis {
			ops = append(ops, op)
		}
	}
	return ops
}

// finish cancels the run, waits for Run to return and heals.
func (r *run) finish(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10s after its context ended")
	}
	if err := r.nem.HealAll(context.Background()); err != nil {
		t.Fatalf("HealAll: %v", err)
	}
}

// schedule runs the nemesis until it recorded n nemesis entries and returns
// them as "start f1 kill kill n2 [n2]" lines.
func schedule(t *testing.T, cfg Config, engine string, seed uint64, n int) []string {
	t.Helper()
	r := startRun(cfg, newRecordingTopology(engine, 5), seed)
	waitFor(t, fmt.Sprintf("%d nemesis entries", n), func() bool { return len(nemesisOps(r.rec)) >= n })
	r.finish(t)
	if c := r.topo.conflictLog(); len(c) > 0 {
		t.Fatalf("seed %d: calls a real topology would reject: %v", seed, c)
	}
	if left := r.topo.leftovers(); len(left) > 0 {
		t.Fatalf("seed %d: HealAll left faults behind: %v", seed, left)
	}
	var lines []string
	for _, op := range nemesisOps(r.rec)[:n] {
		if op.Error != "" {
			t.Fatalf("seed %d: entry %d failed: %s", seed, op.Index, op.Error)
		}
		f := op.Fault
		lines = append(lines, fmt.Sprintf("%s %s %s %s %v", op.F, f.ID, f.Kind, f.Detail, f.Nodes))
	}
	return lines
}

func TestScheduleSameSeedSameFaults(t *testing.T) {
	cases := []struct {
		engine, list string
		concurrent   int
	}{
		{EngineMesh, "partition,latency,reset,kill,pause", 1},
		{EngineMesh, "partition,latency,reset,kill,pause", 2},
		{EngineRedis, "partition,redis-kill,redis-pause,kill,pause", 2},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s-%d", c.engine, c.concurrent)
		cfg := fastConfig(t, c.list, c.engine, c.concurrent)
		first := schedule(t, cfg, c.engine, 7, 40)
		// A fresh Config, because a Fault value keeps its last targets.
		second := schedule(t, fastConfig(t, c.list, c.engine, c.concurrent), c.engine, 7, 40)
		if !reflect.DeepEqual(first, second) {
			t.Errorf("%s: seed 7 gave two schedules:\n%s\n---\n%s", name, strings.Join(first, "\n"), strings.Join(second, "\n"))
		}
		other := schedule(t, fastConfig(t, c.list, c.engine, c.concurrent), c.engine, 8, 40)
		if reflect.DeepEqual(first, other) {
			t.Errorf("%s: seeds 7 and 8 gave the same schedule:\n%s", name, strings.Join(first, "\n"))
		}
	}
}

// TestScheduleNoSharedTargets replays the history and checks that faults
// overlap, but never on the same target.
func TestScheduleNoSharedTargets(t *testing.T) {
	cfg := fastConfig(t, "partition,latency,reset,kill,pause,redis-kill,redis-pause", EngineRedis, 3)
	r := startRun(cfg, newRecordingTopology(EngineRedis, 3), 3)
	waitFor(t, "200 nemesis entries", func() bool { return len(nemesisOps(r.rec)) >= 200 })
	r.finish(t)

	active := map[string]history.Fault{}
	overlaps := 0
	for _, op := range nemesisOps(r.rec) {
		f := *op.Fault
		if op.F == history.FFaultStop {
			delete(active, f.ID)
			continue
		}
		for _, other := range active {
			overlaps++
			if resourceOf(f.Kind) == resourceOf(other.Kind) && resourceOf(f.Kind) != resourceNode {
				t.Fatalf("%s %q started while %s %q held the same target", f.ID, f.Detail, other.ID, other.Detail)
			}
			if resourceOf(f.Kind) == resourceNode && resourceOf(other.Kind) == resourceNode && f.Nodes[0] == other.Nodes[0] {
				t.Fatalf("%s %q started while %s %q held %s", f.ID, f.Detail, other.ID, other.Detail, f.Nodes[0])
			}
		}
		if len(active) >= cfg.MaxConcurrent {
			t.Fatalf("%s started while %d faults were active, more than MaxConcurrent %d", f.ID, len(active), cfg.MaxConcurrent)
		}
		active[f.ID] = f
	}
	if overlaps == 0 {
		t.Error("no two faults ever overlapped with MaxConcurrent 3")
	}
	if c := r.topo.conflictLog(); len(c) > 0 {
		t.Errorf("calls a real topology would reject: %v", c)
	}
}

func TestHealAllStopsEverything(t *testing.T) {
	cfg := fastConfig(t, "kill,pause,partition", EngineMesh, 3)
	cfg.FaultDuration = time.Minute
	r := startRun(cfg, newRecordingTopology(EngineMesh, 5), 11)
	waitFor(t, "an active fault", func() bool { return len(r.nem.Active()) > 0 })
	r.stop()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	active := r.nem.Active()
	if len(active) == 0 {
		t.Fatal("Run ended the faults itself, want them left for HealAll")
	}

	if err := r.nem.HealAll(context.Background()); err != nil {
		t.Fatalf("HealAll: %v", err)
	}
	if left := r.nem.Active(); len(left) > 0 {
		t.Errorf("Active after HealAll = %v, want none", left)
	}
	if left := r.topo.leftovers(); len(left) > 0 {
		t.Errorf("faults left in the topology: %v", left)
	}
	calls := r.topo.callLog()
	if calls[len(calls)-1] != "heal-network " {
		t.Errorf("last call = %q, want heal-network", calls[len(calls)-1])
	}

	// Every start has a stop entry that repeats its fault.
	starts := map[string]history.Fault{}
	for _, op := range nemesisOps(r.rec) {
		if op.F == history.FFaultStart {
			starts[op.Fault.ID] = *op.Fault
		} else if !reflect.DeepEqual(starts[op.Fault.ID], *op.Fault) {
			t.Errorf("stop %+v does not repeat start %+v", *op.Fault, starts[op.Fault.ID])
		} else {
			delete(starts, op.Fault.ID)
		}
	}
	if len(starts) > 0 {
		t.Errorf("faults without a stop entry: %v", starts)
	}
}

func TestHealAllWithNothingActive(t *testing.T) {
	topo := newRecordingTopology(EngineMesh, 3)
	nem := New(fastConfig(t, "kill", EngineMesh, 1), topo, history.NewRecorder(nil), rand.New(rand.NewPCG(1, 1)), nil)
	for range 2 {
		if err := nem.HealAll(context.Background()); err != nil {
			t.Fatalf("HealAll: %v", err)
		}
	}
	if got := topo.callLog(); !reflect.DeepEqual(got, []string{"heal-network ", "heal-network "}) {
		t.Errorf("calls = %v, want two heal-network", got)
	}
	// Run after HealAll starts nothing and returns.
	if err := nem.Run(context.Background()); err != nil {
		t.Errorf("Run after HealAll: %v", err)
	}
}

func TestHealAllReportsFailedStop(t *testing.T) {
	cfg := fastConfig(t, "kill", EngineMesh, 1)
	cfg.FaultDuration = time.Minute
	topo := newRecordingTopology(EngineMesh, 3)
	topo.fail = func(method, _ string) error {
		if method == "restart" {
			return errors.New("restart refused")
		}
		return nil
	}
	r := startRun(cfg, topo, 5)
	waitFor(t, "an active fault", func() bool { return len(r.nem.Active()) > 0 })
	r.stop()
	<-r.done

	err := r.nem.HealAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "restart refused") {
		t.Fatalf("HealAll = %v, want the restart error", err)
	}
	if len(r.nem.Active()) != 1 {
		t.Errorf("Active = %v, want the fault that could not stop", r.nem.Active())
	}

	// Once the topology recovers, a second HealAll ends it.
	topo.mu.Lock()
	topo.fail = nil
	topo.mu.Unlock()
	if err := r.nem.HealAll(context.Background()); err != nil {
		t.Fatalf("second HealAll: %v", err)
	}
	if left := topo.leftovers(); len(left) > 0 {
		t.Errorf("faults left: %v", left)
	}
}

func TestRunFailsOnUnsupportedFault(t *testing.T) {
	topo := newRecordingTopology(EngineMesh, 3)
	topo.fail = func(method, _ string) error {
		if method == "partition" {
			return fmt.Errorf("nftables missing: %w", topology.ErrUnsupported)
		}
		return nil
	}
	r := startRun(fastConfig(t, "partition-halves", EngineMesh, 1), topo, 1)
	select {
	case err := <-r.done:
		if !errors.Is(err, topology.ErrUnsupported) || !strings.Contains(err.Error(), "partition") {
			t.Fatalf("Run = %v, want an ErrUnsupported error naming partition", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return on an unsupported fault")
	}
	r.stop()
	if ops := nemesisOps(r.rec); len(ops) > 0 {
		t.Errorf("recorded %v for a fault that never ran", ops)
	}
}

func TestRunTooFewNodesFails(t *testing.T) {
	r := startRun(fastConfig(t, "partition-ring", EngineMesh, 1), newRecordingTopology(EngineMesh, 2), 1)
	defer r.stop()
	if err := <-r.done; !errors.Is(err, ErrTooFewNodes) {
		t.Fatalf("Run = %v, want ErrTooFewNodes", err)
	}
}

func TestRunRetriesFailedStart(t *testing.T) {
	topo := newRecordingTopology(EngineMesh, 3)
	kills := 0
	topo.fail = func(method, _ string) error {
		if method == "kill" {
			kills++
			if kills == 1 {
				return errors.New("kill timed out")
			}
		}
		return nil
	}
	r := startRun(fastConfig(t, "kill", EngineMesh, 1), topo, 2)
	waitFor(t, "4 nemesis entries", func() bool { return len(nemesisOps(r.rec)) >= 4 })
	r.finish(t)

	ops := nemesisOps(r.rec)
	failedStart, undo, next := ops[0], ops[1], ops[2]
	if failedStart.F != history.FFaultStart || !strings.Contains(failedStart.Error, "kill timed out") {
		t.Errorf("first entry = %+v, want a start carrying the kill error", failedStart)
	}
	if undo.F != history.FFaultStop || undo.Fault.ID != failedStart.Fault.ID {
		t.Errorf("second entry = %+v, want the stop of %s", undo, failedStart.Fault.ID)
	}
	if len(failedStart.Fault.Nodes) != 1 {
		t.Errorf("failed start names nodes %v, want the node it tried to kill", failedStart.Fault.Nodes)
	}
	if next.F != history.FFaultStart || next.Error != "" || next.Fault.ID != "f2" {
		t.Errorf("third entry = %+v, want a clean start of f2", next)
	}
}

func TestResetStopsAtOnce(t *testing.T) {
	cfg := fastConfig(t, "reset", EngineMesh, 1)
	cfg.FaultDuration = time.Minute
	r := startRun(cfg, newRecordingTopology(EngineMesh, 3), 4)
	waitFor(t, "2 nemesis entries", func() bool { return len(nemesisOps(r.rec)) >= 2 })
	r.finish(t)
	ops := nemesisOps(r.rec)
	if ops[0].F != history.FFaultStart || ops[1].F != history.FFaultStop || ops[0].Fault.ID != ops[1].Fault.ID {
		t.Fatalf("entries %+v, %+v: want start and stop of one reset", ops[0], ops[1])
	}
	if window := time.Duration(ops[1].Time - ops[0].Time); window > 5*time.Second {
		t.Errorf("reset window lasted %v, want an instant", window)
	}
	if ops[0].Fault.Mechanism != "fake-reset" {
		t.Errorf("mechanism = %q, want the topology's", ops[0].Fault.Mechanism)
	}
}

func TestRunWithoutFaults(t *testing.T) {
	rec := history.NewRecorder(nil)
	nem := New(Config{}, newRecordingTopology(EngineMesh, 3), rec, rand.New(rand.NewPCG(1, 1)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := nem.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ops := rec.Ops(); len(ops) > 0 {
		t.Errorf("recorded %v without faults", ops)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	faults, _ := Parse("kill", EngineMesh)
	cases := []Config{
		{Faults: faults, Interval: -time.Second},
		{Faults: faults, FaultDuration: -time.Second},
		{Faults: faults, MaxConcurrent: -1},
		{Faults: []Fault{nil}},
	}
	for _, cfg := range cases {
		nem := New(cfg, newRecordingTopology(EngineMesh, 3), history.NewRecorder(nil), rand.New(rand.NewPCG(1, 1)), nil)
		if err := nem.Run(context.Background()); err == nil {
			t.Errorf("Run with %+v = nil, want an error", cfg)
		}
	}
}

func TestHoldStartsAfterSlowStart(t *testing.T) {
	const slow = 200 * time.Millisecond
	topo := newRecordingTopology(EngineMesh, 3)
	topo.fail = func(method, _ string) error {
		if method == "kill" {
			time.Sleep(slow)
		}
		return nil
	}
	cfg := fastConfig(t, "kill", EngineMesh, 1)
	cfg.FaultDuration = 40 * time.Millisecond
	r := startRun(cfg, topo, 6)
	waitFor(t, "2 nemesis entries", func() bool { return len(nemesisOps(r.rec)) >= 2 })
	r.finish(t)

	ops := nemesisOps(r.rec)
	// The start entry's time is when the kill began, so the window spans
	// the slow kill and then at least 3/4 of the fault duration.
	if window, least := time.Duration(ops[1].Time-ops[0].Time), slow+cfg.FaultDuration*3/4; window < least {
		t.Errorf("kill window lasted %v, want at least %v", window, least)
	}
}

func TestLossDegradesChosenLinks(t *testing.T) {
	topo := newRecordingTopology(EngineMesh, 3)
	rng := rand.New(rand.NewPCG(3, 4))
	desc, err := loss{}.Start(context.Background(), topo, rng)
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	if desc.Mechanism != "fake-degrade" {
		t.Errorf("mechanism = %q, want the topology's", desc.Mechanism)
	}
	if !strings.HasPrefix(desc.Detail, "loss ") || len(desc.Nodes) == 0 {
		t.Errorf("fault = %+v, want a loss detail and the touched nodes", desc)
	}
	if len(topo.degraded) == 0 || len(topo.conflicts) > 0 {
		t.Errorf("degraded %v, conflicts %v", topo.degraded, topo.conflicts)
	}
}
