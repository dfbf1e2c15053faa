package checker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/server"
)

// phBuilder builds a history by hand for the presence checkers' tests.
// Entries may be added in any order: input sorts them by time, keeping the
// order of entries with the same time.
type phBuilder struct {
	ops []history.Op
}

func (b *phBuilder) add(op history.Op) {
	b.ops = append(b.ops, op)
}

func (b *phBuilder) phase(name string, at time.Duration) {
	b.add(history.Op{Type: history.Phase, F: name, Process: history.ProcessNemesis, Time: int64(at)})
}

// phases adds the run schedule: setup at 0, main at 1 s, then heal,
// recovery, final and done at the given times.
func (b *phBuilder) phases(heal, recovery, final, done time.Duration) {
	b.phase(history.PhaseSetup, 0)
	b.phase(history.PhaseMain, time.Second)
	b.phase(history.PhaseHeal, heal)
	b.phase(history.PhaseRecovery, recovery)
	b.phase(history.PhaseFinal, final)
	b.phase(history.PhaseDone, done)
}

// call adds an invoke at from and its completion of type typ at to.
func (b *phBuilder) call(op history.Op, from, to time.Duration, typ history.Type) {
	op.Type, op.Time = history.Invoke, int64(from)
	done := op
	op.Members = nil
	b.add(op)
	done.Type, done.Time = typ, int64(to)
	b.add(done)
}

func (b *phBuilder) connect(p, e int, node string, at time.Duration) {
	b.call(history.Op{F: history.FConnect, Process: p, Epoch: e, Node: node}, at, at, history.Ok)
}

func (b *phBuilder) join(p, e int, node, ch, member string, from, to time.Duration, typ history.Type, roster []history.Member) {
	b.call(history.Op{F: history.FJoin, Process: p, Epoch: e, Node: node, Channel: ch, Member: member, Members: roster}, from, to, typ)
}

func (b *phBuilder) leave(p, e int, node, ch string, from, to time.Duration, typ history.Type) {
	b.call(history.Op{F: history.FLeave, Process: p, Epoch: e, Node: node, Channel: ch}, from, to, typ)
}

func (b *phBuilder) read(p, e int, node, ch string, from, to time.Duration, roster []history.Member) {
	b.call(history.Op{F: history.FMembers, Process: p, Epoch: e, Node: node, Channel: ch, Members: roster}, from, to, history.Ok)
}

// event adds a presence event received by connection (p, e) on node.
func (b *phBuilder) event(p, e int, node, f, ch, member string, at time.Duration) {
	b.add(history.Op{Type: history.Event, F: f, Process: p, Epoch: e, Node: node, Channel: ch, Member: member, Time: int64(at)})
}

func (b *phBuilder) disconnect(p, e int, node string, at time.Duration) {
	b.add(history.Op{Type: history.Event, F: history.FDisconnect, Process: p, Epoch: e, Node: node, Time: int64(at), Error: "connection lost"})
}

func (b *phBuilder) drop(p, e int, node string, at time.Duration) {
	b.call(history.Op{F: history.FDrop, Process: p, Epoch: e, Node: node}, at, at+time.Millisecond, history.Ok)
}

// fault adds the start and stop entries of a fault.
func (b *phBuilder) fault(id, kind string, nodes []string, links [][2]string, start, stop time.Duration) {
	f := &history.Fault{ID: id, Kind: kind, Detail: kind, Nodes: nodes, Links: links, Mechanism: "test"}
	b.add(history.Op{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis, Time: int64(start), Fault: f})
	b.add(history.Op{Type: history.Nemesis, F: history.FFaultStop, Process: history.ProcessNemesis, Time: int64(stop), Fault: f})
}

func (b *phBuilder) probe(node string, at time.Duration, ready bool) {
	b.add(history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe, Node: node, Time: int64(at), Ready: &ready})
}

// probes adds a probe of node every 250 ms from from to to, with result
// ready(t).
func (b *phBuilder) probes(node string, from, to time.Duration, ready func(t time.Duration) bool) {
	for t := from; t <= to; t += 250 * time.Millisecond {
		b.probe(node, t, ready(t))
	}
}

// input returns the history sorted by time with fresh indexes.
func (b *phBuilder) input(run Run) Input {
	ops := slices.Clone(b.ops)
	slices.SortStableFunc(ops, func(x, y history.Op) int {
		switch {
		case x.Time < y.Time:
			return -1
		case x.Time > y.Time:
			return 1
		}
		return 0
	})
	for i := range ops {
		ops[i].Index = i
	}
	return Input{Run: run, History: ops}
}

// roster builds a roster from "member@node" entries, one connection each.
func roster(entries ...string) []history.Member {
	var members []history.Member
	for _, e := range entries {
		member, node, _ := strings.Cut(e, "@")
		members = append(members, history.Member{Member: member, Connections: []history.Connection{{Node: node, Conn: "c-" + member}}})
	}
	slices.SortFunc(members, func(a, b history.Member) int { return strings.Compare(a.Member, b.Member) })
	return members
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

var phRun = Run{
	Engine:            "mesh",
	Nodes:             []string{"n1", "n2", "n3"},
	HeartbeatInterval: time.Second,
	PeerTimeout:       3 * time.Second,
	PingInterval:      10 * time.Second,
}

// convergenceBase is a run with five churned members on channel "c": m1 on
// n1 and m2 on n2 stay, m3 left, m4's connection was dropped, and m5's join
// has an unknown outcome. The heal phase starts at 10 s, recovery at 11 s
// and the final phase at 20 s.
func convergenceBase() *phBuilder {
	b := &phBuilder{}
	b.phases(10*time.Second, 11*time.Second, 20*time.Second, 21*time.Second)
	b.connect(1, 1, "n1", ms(1100))
	b.join(1, 1, "n1", "c", "m1", ms(1200), ms(1210), history.Ok, roster("m1@n1"))
	b.connect(2, 1, "n2", ms(1100))
	b.join(2, 1, "n2", "c", "m2", ms(1300), ms(1310), history.Ok, roster("m1@n1", "m2@n2"))
	b.connect(3, 1, "n3", ms(1100))
	b.join(3, 1, "n3", "c", "m3", ms(1400), ms(1410), history.Ok, roster("m1@n1", "m2@n2", "m3@n3"))
	b.leave(3, 1, "n3", "c", ms(2000), ms(2010), history.Ok)
	b.connect(4, 1, "n1", ms(1100))
	b.join(4, 1, "n1", "c", "m4", ms(1500), ms(1510), history.Ok, roster("m1@n1", "m2@n2", "m4@n1"))
	b.drop(4, 1, "n1", ms(3000))
	b.connect(5, 1, "n3", ms(1100))
	b.join(5, 1, "n3", "c", "m5", ms(1600), ms(3600), history.Info, nil)
	return b
}

// convergenceAddReads adds a read of "c" on every node at each time, all
// listing want.
func convergenceAddReads(b *phBuilder, want []history.Member, times ...time.Duration) {
	for i, node := range []string{"n1", "n2", "n3"} {
		b.connect(100+i, 1, node, 0)
		for _, at := range times {
			b.read(100+i, 1, node, "c", at, at+ms(5), want)
		}
	}
}

func TestConvergenceValid(t *testing.T) {
	b := convergenceBase()
	convergenceAddReads(b, roster("m1@n1", "m2@n2"), ms(11500), ms(20100))
	// m5's join may have happened, so a roster may list it.
	b.connect(200, 1, "n3", 0)
	b.read(200, 1, "n3", "c", ms(20200), ms(20210), roster("m1@n1", "m2@n2", "m5@n3"))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["truth-members"])
	assert.Equal(t, 1, res.Counts["uncertain-members"])
	assert.Equal(t, 4, res.Counts["final-reads"])
	assert.InDelta(t, 505, res.Stats["convergence-ms"], 1, "first read after the recovery start returned at 11.505 s")
	assert.InDelta(t, 1505, res.Stats["convergence-from-heal-start-ms"], 1)
}

func TestConvergenceFinalMismatch(t *testing.T) {
	b := convergenceBase()
	b.connect(101, 1, "n1", 0)
	b.read(101, 1, "n1", "c", ms(20100), ms(20105), roster("m1@n1", "m2@n2"))
	b.connect(102, 1, "n2", 0)
	b.read(102, 1, "n2", "c", ms(20100), ms(20105), roster("m1@n1", "m2@n2", "m4@n1"))
	b.connect(103, 1, "n3", 0)
	b.read(103, 1, "n3", "c", ms(20100), ms(20105), roster("m1@n1"))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["final-mismatch"])
	require.Len(t, res.Anomalies["final-mismatch"], 2)
	byNode := map[string]string{}
	for _, a := range res.Anomalies["final-mismatch"] {
		byNode[a.Node] = a.Description
	}
	assert.Contains(t, byNode["n2"], "extra [m4]", "m4's connection was dropped")
	assert.Contains(t, byNode["n3"], "missing [m2]")
}

func TestConvergenceSlow(t *testing.T) {
	b := convergenceBase()
	// n2 keeps listing the dropped m4 until 18 s, more than 2 x peer
	// timeout (6 s) after the recovery start at 11 s.
	stale := roster("m1@n1", "m2@n2", "m4@n1")
	good := roster("m1@n1", "m2@n2")
	b.connect(110, 1, "n2", 0)
	for at := 11 * time.Second; at <= 18*time.Second; at += time.Second {
		b.read(110, 1, "n2", "c", at, at+ms(5), stale)
	}
	b.read(110, 1, "n2", "c", ms(19000), ms(19005), good)
	convergenceAddReads(b, good, ms(11500), ms(20100))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["final-mismatch"])
	assert.Equal(t, 1, res.Counts["slow-convergence"])
	assert.InDelta(t, 8005, res.Stats["convergence-ms"], 1, "n2 converged by the read that returned at 19.005 s")
	require.Len(t, res.Anomalies["slow-convergence"], 1)
	assert.Equal(t, "n2", res.Anomalies["slow-convergence"][0].Node)
}

func TestConvergenceNeverConverged(t *testing.T) {
	b := convergenceBase()
	// n2 lists the dropped m4 in every read until 18 s and has no final
	// read.
	b.connect(110, 1, "n2", 0)
	for at := 11 * time.Second; at <= 18*time.Second; at += time.Second {
		b.read(110, 1, "n2", "c", at, at+ms(5), roster("m1@n1", "m2@n2", "m4@n1"))
	}
	b.connect(101, 1, "n1", 0)
	b.read(101, 1, "n1", "c", ms(20100), ms(20105), roster("m1@n1", "m2@n2"))
	b.connect(103, 1, "n3", 0)
	b.read(103, 1, "n3", "c", ms(20100), ms(20105), roster("m1@n1", "m2@n2"))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["slow-convergence"])
	assert.Equal(t, 1, res.Counts["final-read-missing"])
}

func TestConvergenceSlowNeedsProof(t *testing.T) {
	b := convergenceBase()
	// The last differing read was invoked 5 s after the heal, within the
	// limit; the next read comes late, but that only bounds the time.
	b.connect(110, 1, "n2", 0)
	b.read(110, 1, "n2", "c", ms(16000), ms(16005), roster("m1@n1", "m2@n2", "m4@n1"))
	convergenceAddReads(b, roster("m1@n1", "m2@n2"), ms(11500), ms(20100))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["slow-convergence"])
	assert.InDelta(t, 9105, res.Stats["convergence-ms"], 1, "the read after the last differing one returned at 20.105 s")
}

func TestConvergenceNoFinalReads(t *testing.T) {
	b := convergenceBase()
	convergenceAddReads(b, roster("m1@n1", "m2@n2"), ms(11500))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Contains(t, res.Summary, "no final roster read")
}

func TestConvergenceNoFinalPhase(t *testing.T) {
	b := &phBuilder{}
	b.phase(history.PhaseSetup, 0)

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
}

func TestConvergenceMissingNode(t *testing.T) {
	b := convergenceBase()
	b.connect(101, 1, "n1", 0)
	b.read(101, 1, "n1", "c", ms(20100), ms(20105), roster("m1@n1", "m2@n2"))
	b.connect(102, 1, "n2", 0)
	b.read(102, 1, "n2", "c", ms(20100), ms(20105), roster("m1@n1", "m2@n2"))

	res := Convergence().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["final-read-missing"])
	assert.Contains(t, res.Summary, "c on n3")
}

// phNode is one in-process node of the real-cluster test.
type phNode struct {
	id      string
	node    *server.Node
	wsURL   string
	httpURL string
	cancel  context.CancelFunc
	done    chan error
}

// phStartMesh starts a mesh of in-process nodes on loopback ports.
func phStartMesh(t *testing.T, ids []string, heartbeat, peerTimeout time.Duration) []*phNode {
	t.Helper()
	cluster := make([]string, len(ids))
	for i := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		cluster[i] = ln.Addr().String()
		require.NoError(t, ln.Close())
	}
	var nodes []*phNode
	for i, id := range ids {
		cfg := config.Default()
		cfg.NodeID, cfg.Engine = id, "mesh"
		cfg.ClusterListen, cfg.ClusterAdvertise = cluster[i], cluster[i]
		cfg.Peers = slices.Delete(slices.Clone(cluster), i, i+1)
		cfg.ClusterSecret = "checker-test-secret"
		cfg.HeartbeatInterval, cfg.PeerTimeout = heartbeat, peerTimeout
		node, err := server.New(cfg, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		n := &phNode{id: id, node: node, wsURL: "ws://" + ln.Addr().String() + "/ws", httpURL: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
		go func() { n.done <- node.Serve(ctx, ln) }()
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.cancel()
			<-n.done
		}
	})
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if n.node.Status().ConnectedPeers != len(nodes)-1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the nodes did not connect")
	return nodes
}

// phClient is a client connection that records its operations and the
// presence events it receives, as the workloads do.
type phClient struct {
	rec            *history.Recorder
	c              *client.Client
	process, epoch int
	node           string
	done           chan struct{}
	mu             sync.Mutex
	// closing is set by drop and close, quiet by close alone: nothing
	// more is recorded.
	closing, quiet bool
}

func phDial(t *testing.T, rec *history.Recorder, process, epoch int, n *phNode) *phClient {
	t.Helper()
	op := history.Op{Type: history.Invoke, F: history.FConnect, Process: process, Epoch: epoch, Node: n.id}
	rec.Record(op)
	c, err := client.Dial(context.Background(), n.wsURL, client.Options{})
	require.NoError(t, err)
	op.Type = history.Ok
	rec.Record(op)
	pc := &phClient{rec: rec, c: c, process: process, epoch: epoch, node: n.id, done: make(chan struct{})}
	go pc.drain()
	return pc
}

func (pc *phClient) drain() {
	defer close(pc.done)
	for n := range pc.c.Notifications() {
		if n.Presence == nil {
			continue
		}
		f := history.FPresenceLeave
		if n.Method == client.MethodPresenceJoin {
			f = history.FPresenceJoin
		}
		pc.mu.Lock()
		if !pc.quiet {
			pc.rec.Record(history.Op{Type: history.Event, F: f, Process: pc.process, Epoch: pc.epoch, Node: pc.node,
				Channel: n.Presence.Channel, Member: n.Presence.Member, EventNode: n.Presence.Node,
				Time: max(pc.rec.Now()-int64(time.Since(n.Received)), 1)})
		}
		pc.mu.Unlock()
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !pc.closing {
		pc.rec.Record(history.Op{Type: history.Event, F: history.FDisconnect, Process: pc.process, Epoch: pc.epoch, Node: pc.node})
	}
}

// call records op around fn, which may fill in the roster.
func (pc *phClient) call(t *testing.T, op history.Op, fn func(ctx context.Context) ([]client.Member, error)) {
	op.Type, op.Process, op.Epoch, op.Node = history.Invoke, pc.process, pc.epoch, pc.node
	pc.rec.Record(op)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	roster, err := fn(ctx)
	require.NoError(t, err, "%s of process %d", op.F, pc.process)
	op.Type = history.Ok
	for _, m := range roster {
		hm := history.Member{Member: m.Member}
		for _, c := range m.Connections {
			hm.Connections = append(hm.Connections, history.Connection{Node: c.Node, Conn: c.Conn})
		}
		op.Members = append(op.Members, hm)
	}
	pc.rec.Record(op)
}

func (pc *phClient) join(t *testing.T, ch, member string) {
	pc.call(t, history.Op{F: history.FJoin, Channel: ch, Member: member}, func(ctx context.Context) ([]client.Member, error) {
		return pc.c.Join(ctx, ch, member, nil)
	})
}

func (pc *phClient) leave(t *testing.T, ch string) {
	pc.call(t, history.Op{F: history.FLeave, Channel: ch}, func(ctx context.Context) ([]client.Member, error) {
		return nil, pc.c.Leave(ctx, ch)
	})
}

func (pc *phClient) read(t *testing.T, ch string) {
	pc.call(t, history.Op{F: history.FMembers, Channel: ch}, func(ctx context.Context) ([]client.Member, error) {
		return pc.c.Members(ctx, ch)
	})
}

// drop closes the connection without leaving, recorded as FDrop.
func (pc *phClient) drop() {
	pc.mu.Lock()
	pc.closing = true
	pc.mu.Unlock()
	op := history.Op{Type: history.Invoke, F: history.FDrop, Process: pc.process, Epoch: pc.epoch, Node: pc.node}
	pc.rec.Record(op)
	_ = pc.c.Close()
	<-pc.done
	op.Type = history.Ok
	pc.rec.Record(op)
}

// close closes the connection without recording, as a workload's Close.
func (pc *phClient) close() {
	pc.mu.Lock()
	pc.closing, pc.quiet = true, true
	pc.mu.Unlock()
	_ = pc.c.Close()
	<-pc.done
}

// phProbe records every node's /readyz every 100 ms until ctx ends.
func phProbe(ctx context.Context, rec *history.Recorder, nodes []*phNode) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range nodes {
			op := history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe, Node: n.id}
			resp, err := http.Get(n.httpURL + "/readyz")
			if err != nil {
				op.Error = err.Error()
			} else {
				ready := resp.StatusCode == http.StatusOK
				op.Ready = &ready
				_ = resp.Body.Close()
			}
			rec.Record(op)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// phChurn joins, reads and leaves or drops on alternating nodes, like a
// churn worker of the presence workload. It returns its open connection.
func phChurn(t *testing.T, rec *history.Recorder, nodes []*phNode, process int, rng *rand.Rand) *phClient {
	epoch := 1
	pc := phDial(t, rec, process, epoch, nodes[process%len(nodes)])
	for k := 1; k <= 8; k++ {
		pc.join(t, "room", fmt.Sprintf("m%d.%d.%d", process, epoch, k))
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		pc.read(t, "room")
		switch r := rng.Float64(); {
		case r < 0.6:
			pc.leave(t, "room")
		case r < 0.85:
			pc.drop()
			epoch++
			pc = phDial(t, rec, process, epoch, nodes[(process+epoch)%len(nodes)])
		default:
			// Keep the membership until the end of the run.
			return pc
		}
	}
	return pc
}

// TestPresenceCheckersRealCluster runs a small presence workload against a
// real two-node mesh, without faults, and expects every presence checker
// to find the history valid.
func TestPresenceCheckersRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a two-node cluster and runs for about 5 s")
	}
	const heartbeat, peerTimeout = 100 * time.Millisecond, 500 * time.Millisecond
	var stream bytes.Buffer
	rec := history.NewRecorder(&stream)
	phase := func(name string) {
		rec.Record(history.Op{Type: history.Phase, F: name, Process: history.ProcessNemesis})
	}

	phase(history.PhaseSetup)
	nodes := phStartMesh(t, []string{"n1", "n2"}, heartbeat, peerTimeout)
	probeCtx, stopProbes := context.WithCancel(context.Background())
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		phProbe(probeCtx, rec, nodes)
	}()
	var observers []*phClient
	for i, n := range nodes {
		o := phDial(t, rec, i, 1, n)
		o.join(t, "room", fmt.Sprintf("obs-%s-p%d", n.id, i))
		observers = append(observers, o)
	}

	// Main: churn workers on both nodes while the observers read.
	phase(history.PhaseMain)
	observe := func(until time.Duration) {
		var wg sync.WaitGroup
		for _, o := range observers {
			wg.Go(func() {
				for end := time.Now().Add(until); time.Now().Before(end); time.Sleep(30 * time.Millisecond) {
					o.read(t, "room")
				}
			})
		}
		wg.Wait()
	}
	var wg sync.WaitGroup
	open := make([]*phClient, 6)
	for p := 2; p < 6; p++ {
		wg.Go(func() { open[p] = phChurn(t, rec, nodes, p, rand.New(rand.NewPCG(uint64(p), 7))) })
	}
	observe(1500 * time.Millisecond)
	wg.Wait()
	copy(open, observers)

	// No fault to heal; the recovery wait reads while the cluster is quiet.
	phase(history.PhaseHeal)
	phase(history.PhaseRecovery)
	observe(time.Second)

	phase(history.PhaseFinal)
	for i, n := range nodes {
		f := phDial(t, rec, 100+i, 1, n)
		f.read(t, "room")
		f.close()
	}
	// Readiness needs probe results past heal + 2 x peer timeout + 2 s.
	time.Sleep(2*peerTimeout + 2500*time.Millisecond)
	stopProbes()
	<-probed
	phase(history.PhaseDone)
	for _, pc := range open {
		pc.close()
	}
	require.NoError(t, rec.Flush())

	// Check the history as a run would read it back from its file.
	ops, err := history.Read(&stream)
	require.NoError(t, err)
	require.Equal(t, rec.Ops(), ops)
	in := Input{
		Run:     Run{Engine: "mesh", Nodes: []string{"n1", "n2"}, HeartbeatInterval: heartbeat, PeerTimeout: peerTimeout, PingInterval: 10 * time.Second},
		History: ops,
		Dir:     t.TempDir(),
	}
	for _, c := range []Checker{Convergence(), Ghosts(), Events(), Readiness(), Linearizable(), TotalOrder()} {
		res := c.Check(in)
		assert.Equal(t, Valid, res.Valid, "%s: %s %v %v", c.Name(), res.Summary, res.Counts, res.Anomalies)
		t.Logf("%s: %s", c.Name(), res.Summary)
	}

	t.Run("lost event", func(t *testing.T) {
		i := slices.IndexFunc(ops, func(op history.Op) bool { return op.F == history.FPresenceLeave && op.Process == 0 })
		require.GreaterOrEqual(t, i, 0, "observer p0 received no presence.leave")
		broken := in
		broken.History = slices.Delete(slices.Clone(ops), i, i+1)
		for j := range broken.History {
			broken.History[j].Index = j
		}
		assert.Equal(t, Invalid, Events().Check(broken).Valid)
	})
	t.Run("ghost in final read", func(t *testing.T) {
		broken := in
		broken.History = slices.Clone(ops)
		i := slices.IndexFunc(broken.History, func(op history.Op) bool {
			return op.F == history.FMembers && op.Type == history.Ok && op.Process == 101
		})
		require.GreaterOrEqual(t, i, 0)
		broken.History[i].Members = append(slices.Clone(broken.History[i].Members), roster("m9.9.9@n1")...)
		assert.Equal(t, Invalid, Convergence().Check(broken).Valid)
	})
	t.Run("read misses its own member", func(t *testing.T) {
		broken := in
		broken.History = slices.Clone(ops)
		i := slices.IndexFunc(broken.History, func(op history.Op) bool { return op.F == history.FMembers && op.Type == history.Ok && op.Process == 0 })
		require.GreaterOrEqual(t, i, 0)
		broken.History[i].Members = slices.DeleteFunc(slices.Clone(broken.History[i].Members), func(m history.Member) bool { return m.Member == "obs-n1-p0" })
		assert.Equal(t, Invalid, Linearizable().Check(broken).Valid)
	})
}
