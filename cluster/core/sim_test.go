package core

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// The simulation runs several nodes over an in-memory network whose links
// deliver in order, and applies a seeded random schedule of publishes,
// presence changes, partitions, heals, crashes, restarts and pauses. After
// the schedule it heals everything, lets the cluster settle and checks:
// no duplicates, per-publisher order, no loss between nodes that stayed
// up, roster convergence and no ghosts. A failing seed is printed; set
// WSCLUSTER_SIM_SEED to replay it.

const (
	simHeartbeat = time.Second
	simTimeout   = 3 * time.Second
	simTick      = 250 * time.Millisecond
)

type pair struct{ a, b string }

func orderedPair(a, b string) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// simLink is an established link with one FIFO queue per direction.
type simLink struct {
	id     uint64
	queues map[string][]*wire.Envelope // keyed by receiver
}

type delivery struct {
	origin string
	inc    uint64
	seq    uint64
}

type simNode struct {
	id      string
	inc     uint64
	started time.Time
	core    *Node
	running bool
	paused  bool
	// resumedAt is when the node was last unpaused; a paused node does
	// not tick, so it cannot purge on time.
	resumedAt time.Time

	local map[chanConn]backplane.PresenceEntry
	// roster is the node's view of other nodes' entries, built from effects.
	roster map[string]map[chanConn]backplane.PresenceEntry
	// delivered maps msg ids to how often they were delivered.
	delivered map[string]int
	// lastSeq is the last seq delivered per origin incarnation.
	lastSeq map[string]uint64
	conns   int
}

type published struct {
	id     string
	origin string
	inc    uint64
	at     time.Time
}

// crashRecord is a crash whose purge deadline is still to be checked.
type crashRecord struct {
	id string
	at time.Time
}

// purgeBound is the longest a crashed node's entries may stay on another
// node: the peer timeout, one heartbeat, and the simulation's largest time
// step, because ticks happen only between steps.
const purgeBound = simTimeout + simHeartbeat + 450*time.Millisecond

// staleEnvelope is an envelope of a broken link that still arrives later,
// after a new link may be up: the core must drop it or deduplicate it.
type staleEnvelope struct {
	from, to string
	link     uint64
	env      *wire.Envelope
	due      int
}

type sim struct {
	broadcast bool
	stale     []staleEnvelope
	steps     int
	crashes   []crashRecord
	t         *testing.T
	seed      uint64
	rng       *rand.Rand
	now       time.Time
	nodes     map[string]*simNode
	ids       []string
	links     map[pair]*simLink
	cut       map[pair]bool
	linkSeq   uint64
	msgs      []published
	failures  []string
}

func newSim(t *testing.T, seed uint64, nodes int, broadcast bool) *sim {
	s := &sim{
		broadcast: broadcast,
		t:         t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		nodes: map[string]*simNode{}, links: map[pair]*simLink{}, cut: map[pair]bool{},
	}
	for i := 1; i <= nodes; i++ {
		id := "n" + strconv.Itoa(i)
		s.ids = append(s.ids, id)
		s.start(id)
	}
	return s
}

func (s *sim) failf(format string, args ...any) {
	s.failures = append(s.failures, fmt.Sprintf("t=%s ", s.now.Format("04:05.000"))+fmt.Sprintf(format, args...))
}

func (s *sim) start(id string) {
	inc := s.rng.Uint64()>>16 | 1
	n := &simNode{
		id: id, inc: inc, started: s.now, running: true,
		core: New(Config{NodeID: id, Incarnation: inc, HeartbeatInterval: simHeartbeat, PeerTimeout: simTimeout,
			ReplayMaxAge: 10 * time.Minute, SyncChunkBytes: 200, Broadcast: s.broadcast}, s.now),
		local: map[chanConn]backplane.PresenceEntry{}, roster: map[string]map[chanConn]backplane.PresenceEntry{},
		delivered: map[string]int{}, lastSeq: map[string]uint64{},
	}
	s.nodes[id] = n
}

// crash stops a node without a Leave; its links break.
func (s *sim) crash(id string) {
	s.nodes[id].running = false
	s.crashes = append(s.crashes, crashRecord{id: id, at: s.now})
	for p := range s.links {
		if p.a == id || p.b == id {
			s.breakLink(p)
		}
	}
}

func (s *sim) breakLink(p pair) {
	l := s.links[p]
	delete(s.links, p)
	if s.rng.IntN(3) == 0 {
		due := s.steps + 1 + s.rng.IntN(20)
		for _, to := range []string{p.a, p.b} {
			for _, env := range l.queues[to] {
				s.stale = append(s.stale, staleEnvelope{from: other(p, to), to: to, link: l.id, env: env, due: due})
			}
		}
	}
	for _, id := range []string{p.a, p.b} {
		if n := s.nodes[id]; n.running {
			n.core.LinkDown(other(p, id), l.id)
			s.flush(n)
		}
	}
}

func other(p pair, id string) string {
	if p.a == id {
		return p.b
	}
	return p.a
}

// connect establishes links between running nodes that are not cut off.
func (s *sim) connect() {
	for i, a := range s.ids {
		for _, b := range s.ids[i+1:] {
			p := pair{a, b}
			na, nb := s.nodes[a], s.nodes[b]
			// A handshake needs both processes running.
			if _, up := s.links[p]; up || s.cut[p] || !na.running || !nb.running || na.paused || nb.paused {
				continue
			}
			s.linkSeq++
			s.links[p] = &simLink{id: s.linkSeq, queues: map[string][]*wire.Envelope{}}
			na.core.LinkUp(s.now, b, nb.inc, s.linkSeq)
			nb.core.LinkUp(s.now, a, na.inc, s.linkSeq)
			s.flush(na)
			s.flush(nb)
		}
	}
}

// flush takes a node's output: sends go into link queues, effects into the
// node's model of the roster and its delivery log.
func (s *sim) flush(n *simNode) {
	out := n.core.Drain()
	for _, send := range out.Sends {
		if send.To == Everyone {
			// A broadcast reaches every node linked to the sender.
			for p, l := range s.links {
				if p.a == n.id || p.b == n.id {
					to := other(p, n.id)
					l.queues[to] = append(l.queues[to], send.Envelope)
				}
			}
			continue
		}
		if l := s.links[orderedPair(n.id, send.To)]; l != nil {
			l.queues[send.To] = append(l.queues[send.To], send.Envelope)
		}
	}
	for _, e := range out.Effects {
		s.apply(n, e)
	}
}

func (s *sim) apply(n *simNode, e Effect) {
	switch e.Kind {
	case EffectDeliver:
		s.deliver(n, e.Message)
	case EffectApplyPresence:
		view := n.roster[e.Node]
		if view == nil {
			view = map[chanConn]backplane.PresenceEntry{}
			n.roster[e.Node] = view
		}
		for _, d := range e.Deltas {
			applyDelta(view, d)
		}
	case EffectSyncPresence:
		view := map[chanConn]backplane.PresenceEntry{}
		for _, entry := range e.Entries {
			view[chanConn{entry.Channel, entry.Conn}] = entry
		}
		n.roster[e.Node] = view
	}
}

func (s *sim) deliver(n *simNode, msg backplane.Message) {
	n.delivered[msg.ID]++
	if n.delivered[msg.ID] > 1 {
		s.failf("%s delivered %s twice", n.id, msg.ID)
	}
	parts := strings.Split(msg.ID, "/")
	seq, _ := strconv.ParseUint(parts[2], 10, 64)
	key := parts[0] + "/" + parts[1]
	if seq <= n.lastSeq[key] {
		s.failf("%s delivered %s after seq %d: out of order", n.id, msg.ID, n.lastSeq[key])
	}
	n.lastSeq[key] = seq
}

// pump delivers the stale envelopes, then up to max queued envelopes per
// link direction.
func (s *sim) pump(max int) {
	stale := s.stale
	s.stale = nil
	for _, st := range stale {
		if st.due > s.steps {
			s.stale = append(s.stale, st)
			continue
		}
		if n := s.nodes[st.to]; n.running && !n.paused {
			n.core.Receive(s.now, st.from, st.link, st.env)
			s.flush(n)
		}
	}
	for _, p := range s.sortedLinks() {
		l := s.links[p]
		if s.cut[p] {
			// A cut link that stayed open delivers nothing until the heal,
			// like TCP across a partition.
			continue
		}
		for _, to := range []string{p.a, p.b} {
			n := s.nodes[to]
			if n.paused {
				continue
			}
			count := min(max, len(l.queues[to]))
			for _, env := range l.queues[to][:count] {
				n.core.Receive(s.now, other(p, to), l.id, env)
			}
			l.queues[to] = l.queues[to][count:]
			s.flush(n)
		}
	}
}

func (s *sim) sortedLinks() []pair {
	out := make([]pair, 0, len(s.links))
	for p := range s.links {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].a+out[i].b < out[j].a+out[j].b })
	return out
}

func (s *sim) advance(d time.Duration) {
	s.now = s.now.Add(d)
	for _, id := range s.ids {
		if n := s.nodes[id]; n.running && !n.paused {
			n.core.Tick(s.now)
			s.flush(n)
		}
	}
	s.checkPurges()
}

// checkPurges requires that the entries of a crashed node are gone from
// every node that ran unpaused since the crash, once purgeBound passed.
func (s *sim) checkPurges() {
	kept := s.crashes[:0]
	for _, c := range s.crashes {
		if s.now.Sub(c.at) < purgeBound {
			kept = append(kept, c)
			continue
		}
		if s.nodes[c.id].started.After(c.at) {
			// A later incarnation may list entries of its own.
			continue
		}
		for _, id := range s.ids {
			n := s.nodes[id]
			if n.running && !n.paused && !n.resumedAt.After(c.at) && !n.started.After(c.at) && len(n.roster[c.id]) > 0 {
				s.failf("%s still lists %d entries of %s, crashed at %s", id, len(n.roster[c.id]), c.id, c.at.Format("04:05.000"))
			}
		}
	}
	s.crashes = kept
}

func (s *sim) publish(n *simNode) {
	seq := n.core.LastSeq() + 1
	id := fmt.Sprintf("%s/%d/%d", n.id, n.inc, seq)
	n.core.Publish(s.now, backplane.Message{ID: id, Channel: "c", Data: json.RawMessage(`1`)})
	s.msgs = append(s.msgs, published{id: id, origin: n.id, inc: n.inc, at: s.now})
	s.deliver(n, backplane.Message{ID: id})
	s.flush(n)
}

func (s *sim) presenceChange(n *simNode) {
	channel := "room" + strconv.Itoa(s.rng.IntN(3))
	if len(n.local) > 0 && s.rng.IntN(2) == 0 {
		keys := sortedEntries(n.local)
		e := keys[s.rng.IntN(len(keys))]
		delete(n.local, chanConn{e.Channel, e.Conn})
		n.core.PresenceChanged(backplane.PresenceDelta{Op: backplane.PresenceLeave, Entry: e})
	} else {
		n.conns++
		e := backplane.PresenceEntry{Channel: channel, Member: "m" + strconv.Itoa(s.rng.IntN(5)), Node: n.id,
			Conn: fmt.Sprintf("%s/%d/c%d", n.id, n.inc, n.conns), Info: json.RawMessage(`{}`)}
		n.local[chanConn{e.Channel, e.Conn}] = e
		n.core.PresenceChanged(backplane.PresenceDelta{Op: backplane.PresenceJoin, Entry: e})
	}
	s.flush(n)
}

// partition cuts every link between two random halves.
func (s *sim) partition() {
	s.cut = map[pair]bool{}
	side := map[string]bool{}
	for _, id := range s.ids {
		side[id] = s.rng.IntN(2) == 0
	}
	for i, a := range s.ids {
		for _, b := range s.ids[i+1:] {
			if side[a] != side[b] {
				s.cut[pair{a, b}] = true
				if _, up := s.links[pair{a, b}]; up && s.rng.IntN(4) > 0 {
					// Most cuts break the link; the rest leave it open but
					// silent, like a partition TCP has not noticed yet.
					s.breakLink(pair{a, b})
				}
			}
		}
	}
}

// step applies one random operation, then moves time and messages on.
func (s *sim) step() {
	s.steps++
	id := s.ids[s.rng.IntN(len(s.ids))]
	n := s.nodes[id]
	switch r := s.rng.IntN(100); {
	case r < 35 && n.running && !n.paused:
		s.publish(n)
	case r < 60 && n.running && !n.paused:
		s.presenceChange(n)
	case r < 65:
		s.partition()
	case r < 72:
		s.cut = map[pair]bool{}
	case r < 75 && n.running:
		s.crash(id)
	case r < 80 && !n.running:
		s.start(id)
	case r < 83 && n.running:
		n.paused = !n.paused
		n.resumedAt = s.now
	}
	s.connect()
	s.pump(1 + s.rng.IntN(4))
	s.advance(time.Duration(50+s.rng.IntN(400)) * time.Millisecond)
}

// settle heals every fault and runs until the cluster is quiet.
func (s *sim) settle() {
	s.cut = map[pair]bool{}
	for _, id := range s.ids {
		n := s.nodes[id]
		n.paused = false
		if !n.running {
			s.start(id)
		}
	}
	for range 80 {
		s.connect()
		s.pump(1 << 20)
		s.advance(simTick)
	}
}

func (s *sim) check() {
	s.checkDelivery()
	s.checkRosters()
}

// checkDelivery requires every publish of an incarnation that is still
// running to reach every node whose incarnation started before it.
func (s *sim) checkDelivery() {
	for _, m := range s.msgs {
		if s.nodes[m.origin].inc != m.inc {
			continue
		}
		for _, id := range s.ids {
			n := s.nodes[id]
			if n.started.After(m.at) {
				continue
			}
			if n.delivered[m.id] != 1 {
				s.failf("%s delivered %s %d times, want 1", id, m.id, n.delivered[m.id])
			}
		}
	}
}

// checkRosters requires every node's view of every other node to equal
// that node's own entries, and no view of a node that is not running.
func (s *sim) checkRosters() {
	for _, id := range s.ids {
		n := s.nodes[id]
		for _, otherID := range s.ids {
			if otherID == id {
				continue
			}
			want := sortedEntries(s.nodes[otherID].local)
			got := sortedEntries(n.roster[otherID])
			if fmt.Sprint(want) != fmt.Sprint(got) {
				s.failf("%s's view of %s: %d entries %v, want %d %v", id, otherID, len(got), got, len(want), want)
			}
		}
	}
}

func runSim(t *testing.T, seed uint64, steps int) []string {
	// Odd seeds run in Broadcast mode, as over Redis, even seeds as a mesh.
	s := newSim(t, seed, 3+int(seed%3), seed%2 == 1)
	for range steps {
		s.step()
	}
	s.settle()
	s.check()
	return s.failures
}

func TestSimulationRandomFaults(t *testing.T) {
	seeds := uint64(300)
	if testing.Short() {
		seeds = 50
	}
	if env := os.Getenv("WSCLUSTER_SIM_SEEDS"); env != "" {
		count, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("invalid WSCLUSTER_SIM_SEEDS %q: want an unsigned integer", env)
		}
		seeds = count
	}
	first := uint64(1)
	if env := os.Getenv("WSCLUSTER_SIM_SEED"); env != "" {
		seed, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("invalid WSCLUSTER_SIM_SEED %q: want an unsigned integer", env)
		}
		first, seeds = seed, 1
	}
	for seed := first; seed < first+seeds; seed++ {
		if failures := runSim(t, seed, 600); len(failures) > 0 {
			if len(failures) > 5 {
				failures = failures[:5]
			}
			t.Fatalf("seed %d failed; replay with WSCLUSTER_SIM_SEED=%d go test ./cluster/core -run TestSimulationRandomFaults\n%s",
				seed, seed, strings.Join(failures, "\n"))
		}
	}
}
