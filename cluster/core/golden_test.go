package core

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// trace records every output of one node as readable lines, so that a
// golden file shows exactly what the core did in a scenario.
type trace struct {
	b     strings.Builder
	start time.Time
}

func (tr *trace) add(now time.Time, node string, out Output) {
	at := now.Sub(tr.start)
	for _, s := range out.Sends {
		fmt.Fprintf(&tr.b, "%6s %s send %s: %s\n", at, node, s.To, describe(s.Envelope))
	}
	for _, e := range out.Effects {
		fmt.Fprintf(&tr.b, "%6s %s effect %s\n", at, node, describeEffect(e))
	}
	if out.Counters != (Counters{}) {
		fmt.Fprintf(&tr.b, "%6s %s counters %+v\n", at, node, out.Counters)
	}
}

func describe(env *wire.Envelope) string {
	switch env.Kind {
	case wire.KindHello:
		return fmt.Sprintf("hello resume=%d/%d uptime=%s", env.ResumeIncarnation, env.ResumeSeq, env.Uptime)
	case wire.KindPublish:
		return fmt.Sprintf("publish seq=%d id=%s", env.Seq, env.Message.ID)
	case wire.KindPresence:
		parts := []string{}
		for _, d := range env.Deltas {
			parts = append(parts, fmt.Sprintf("op=%d %s/%s=%s", d.Op, d.Entry.Channel, d.Entry.Conn, d.Entry.Member))
		}
		return "presence " + strings.Join(parts, " ")
	case wire.KindSyncChunk:
		return fmt.Sprintf("sync id=%d entries=%d last=%v", env.SyncID, len(env.Entries), env.Last)
	}
	return env.Kind.String()
}

func describeEffect(e Effect) string {
	switch e.Kind {
	case EffectDeliver:
		return "deliver " + e.Message.ID
	case EffectSyncPresence:
		if e.Entries == nil {
			return "purge " + e.Node
		}
		return fmt.Sprintf("sync %s entries=%d", e.Node, len(e.Entries))
	case EffectApplyPresence:
		return fmt.Sprintf("apply %s deltas=%d", e.Node, len(e.Deltas))
	case EffectPeerDown:
		return fmt.Sprintf("peer_down %s reason=%s", e.Node, e.Reason)
	}
	return e.Kind.String() + " " + e.Node
}

// pairScenario runs two nodes, a and b, through a link, traffic, a link
// loss with publishes in between, a reconnect with replay, and a silence
// long enough to purge.
func pairScenario(tr *trace) {
	now := tr.start
	cfg := func(id string, inc uint64) Config {
		return Config{NodeID: id, Incarnation: inc, HeartbeatInterval: time.Second, PeerTimeout: 3 * time.Second}
	}
	a, b := New(cfg("a", 1), now), New(cfg("b", 2), now)
	deliver := func(to *Node, toID, from string, link uint64, out Output) {
		for _, s := range out.Sends {
			if s.To == toID {
				to.Receive(now, from, link, s.Envelope)
			}
		}
	}
	step := func() {
		outA, outB := a.Drain(), b.Drain()
		tr.add(now, "a", outA)
		tr.add(now, "b", outB)
		deliver(b, "b", "a", 1, outA)
		deliver(a, "a", "b", 1, outB)
	}

	// The link comes up; each side says hello and sends its empty sync.
	a.LinkUp(now, "b", 2, 1)
	b.LinkUp(now, "a", 1, 1)
	step()
	step()

	// A publish and a join flow live.
	a.Publish(now, backplane.Message{ID: "a-1", Channel: "c", Data: json.RawMessage(`1`)})
	b.PresenceChanged(backplane.PresenceDelta{Op: backplane.PresenceJoin, Entry: backplane.PresenceEntry{
		Channel: "room", Member: "bob", Node: "b", Conn: "b-c1", Info: json.RawMessage(`{}`)}})
	step()
	step()

	// The link breaks; publishes during the outage wait in the buffer.
	a.LinkDown("b", 1)
	b.LinkDown("a", 1)
	now = now.Add(500 * time.Millisecond)
	a.Publish(now, backplane.Message{ID: "a-2", Channel: "c", Data: json.RawMessage(`2`)})
	a.Publish(now, backplane.Message{ID: "a-3", Channel: "c", Data: json.RawMessage(`3`)})
	step()

	// A new link replays exactly a-2 and a-3.
	now = now.Add(500 * time.Millisecond)
	a.LinkUp(now, "b", 2, 2)
	b.LinkUp(now, "a", 1, 2)
	outA, outB := a.Drain(), b.Drain()
	tr.add(now, "a", outA)
	tr.add(now, "b", outB)
	deliver(b, "b", "a", 2, outA)
	deliver(a, "a", "b", 2, outB)
	outA, outB = a.Drain(), b.Drain()
	tr.add(now, "a", outA)
	tr.add(now, "b", outB)
	deliver(b, "b", "a", 2, outA)
	tr.add(now, "b", b.Drain())

	// b goes silent: a sends heartbeats, then purges b's member.
	for range 18 {
		now = now.Add(250 * time.Millisecond)
		a.Tick(now)
		tr.add(now, "a", a.Drain())
	}
}

func TestGoldenPairScenario(t *testing.T) {
	tr := &trace{start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	pairScenario(tr)
	path := filepath.Join("testdata", "golden", "pair.txt")
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(tr.b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cluster/core -run TestGolden -update to create it")
	require.Equal(t, string(want), tr.b.String(), "the core's outputs changed; review the diff and rerun with -update if intended")
}

func TestDuplicatePublishDropped(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := New(Config{NodeID: "a", Incarnation: 1}, now)
	n.LinkUp(now, "b", 2, 1)
	n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindHello, Origin: "b", Incarnation: 2})
	n.Drain()
	pub := &wire.Envelope{Kind: wire.KindPublish, Origin: "b", Incarnation: 2, Seq: 1, Message: backplane.Message{ID: "b-1"}}

	n.Receive(now, "b", 1, pub)
	first := n.Drain()
	n.Receive(now, "b", 1, pub)
	second := n.Drain()

	require.Len(t, first.Effects, 1)
	require.Equal(t, EffectDeliver, first.Effects[0].Kind)
	require.Empty(t, second.Effects)
	require.Equal(t, 1, second.Counters.DuplicatesDropped)
}

func TestStaleLinkEnvelopeDropped(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := New(Config{NodeID: "a", Incarnation: 1}, now)
	n.LinkUp(now, "b", 2, 1)
	n.LinkDown("b", 1)
	n.LinkUp(now, "b", 2, 2)
	n.Drain()

	n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindPublish, Origin: "b", Incarnation: 2, Seq: 1, Message: backplane.Message{ID: "b-1"}})
	require.Empty(t, n.Drain().Effects, "an envelope of link 1 arrived after link 2 came up")
}

func TestRestartPurgesOldIncarnation(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := New(Config{NodeID: "a", Incarnation: 1}, now)
	n.LinkUp(now, "b", 2, 1)
	n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindHello, Origin: "b", Incarnation: 2})
	n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindSyncChunk, Origin: "b", Incarnation: 2, SyncID: 1, Last: true,
		Entries: []backplane.PresenceEntry{{Channel: "room", Member: "bob", Node: "b", Conn: "b-c1", Info: json.RawMessage(`{}`)}}})
	n.Drain()

	// b comes back with a new incarnation before its timeout.
	n.LinkDown("b", 1)
	n.LinkUp(now.Add(time.Second), "b", 3, 2)
	effects := n.Drain().Effects

	require.GreaterOrEqual(t, len(effects), 3)
	require.Equal(t, EffectSyncPresence, effects[0].Kind)
	require.Nil(t, effects[0].Entries, "the old incarnation's members are purged at once")
	require.Equal(t, EffectPeerDown, effects[1].Kind)
	require.Equal(t, EffectPeerUp, effects[2].Kind)
}

func TestPublishBeforeHelloDropped(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := New(Config{NodeID: "a", Incarnation: 1}, now)
	n.LinkUp(now, "b", 2, 1)
	n.Drain()

	// b sent seq 5 on the new link before it saw the link come up; the
	// replay after its Hello brings seqs 1 to 5 in order.
	n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindPublish, Origin: "b", Incarnation: 2, Seq: 5, Message: backplane.Message{ID: "b-5"}})
	require.Empty(t, n.Drain().Effects)

	n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindHello, Origin: "b", Incarnation: 2, ResumeIncarnation: 1})
	for seq := uint64(1); seq <= 5; seq++ {
		n.Receive(now, "b", 1, &wire.Envelope{Kind: wire.KindPublish, Origin: "b", Incarnation: 2, Seq: seq, Message: backplane.Message{ID: fmt.Sprintf("b-%d", seq)}})
	}
	var delivered []string
	for _, e := range n.Drain().Effects {
		if e.Kind == EffectDeliver {
			delivered = append(delivered, e.Message.ID)
		}
	}
	require.Equal(t, []string{"b-1", "b-2", "b-3", "b-4", "b-5"}, delivered)
}
