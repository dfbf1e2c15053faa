package core

import (
	"sort"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// peer is what this node knows of one other node.
type peer struct {
	id string
	// incarnation is the peer's current incarnation, 0 before the first link.
	incarnation uint64
	// link is the id of the current link, linked whether it is up and
	// linkedAt when it came up.
	link     uint64
	linked   bool
	linkedAt time.Time
	// streaming is set once the peer's Hello arrived on the current link:
	// from then on publishes flow to it live.
	streaming bool
	// helloSeen is set once the peer's Hello arrived on the current link.
	// A publish or presence envelope before it was sent before the peer
	// saw the link come up, and the peer's replay and sync that follow the
	// Hello cover it, so it is dropped.
	helloSeen bool
	// alive is whether the peer was heard within PeerTimeout.
	alive     bool
	lastHeard time.Time
	// lastSeq is the last publish of the current incarnation delivered.
	lastSeq uint64

	// view is the peer's presence entries as applied to the local roster.
	view map[chanConn]backplane.PresenceEntry
	// awaitingSync is set while the view is stale; deltas are ignored
	// until a full sync from the peer starts.
	awaitingSync bool
	// syncExpected is set while a full sync from the peer is on its way,
	// because a new link brings one or this node asked for one.
	syncExpected bool
	// pending collects the chunks of a sync in progress, pendingID names it.
	pending   map[chanConn]backplane.PresenceEntry
	pendingID uint64
	// abandonedID names a sync cut short by a purge; its remaining chunks
	// are ignored, because without the first ones they are incomplete.
	abandonedID uint64
}

// PeerInfo describes one peer for status pages.
type PeerInfo struct {
	ID          string
	Incarnation uint64
	Linked      bool
	Alive       bool
	LastHeard   time.Time
}

// Peers returns every peer this node has had a link to, sorted by id.
func (n *Node) Peers() []PeerInfo {
	out := make([]PeerInfo, 0, len(n.peers))
	for _, id := range n.sortedPeerIDs() {
		p := n.peers[id]
		out = append(out, PeerInfo{ID: id, Incarnation: p.incarnation, Linked: p.linked, Alive: p.alive, LastHeard: p.lastHeard})
	}
	return out
}

// AlivePeerCount returns the number of peers heard within PeerTimeout.
func (n *Node) AlivePeerCount() int {
	count := 0
	for _, p := range n.peers {
		if p.alive {
			count++
		}
	}
	return count
}

// LinkUp records a new link to node id with the incarnation from its
// handshake. link identifies the link, so that a late LinkDown of an
// earlier link is ignored.
func (n *Node) LinkUp(now time.Time, id string, incarnation, link uint64) {
	p := n.peers[id]
	if p == nil {
		p = &peer{id: id}
		n.peers[id] = p
	}

	// A new incarnation is a restart: the old one is down at once, and
	// its presence entries go with it.
	if p.incarnation != 0 && p.incarnation != incarnation {
		if p.alive {
			n.markDown(p, DownRestarted)
		} else {
			n.purge(p)
		}
		p.lastSeq, p.abandonedID = 0, 0
	}
	p.incarnation = incarnation
	p.link, p.linked, p.linkedAt, p.streaming, p.helloSeen = link, true, now, false, false
	p.awaitingSync, p.syncExpected, p.pending = true, true, nil
	n.markHeard(now, p)

	// The Hello tells the peer where to resume, and the full sync gives it
	// this node's presence entries, both first on the new link.
	resume := &wire.Envelope{Kind: wire.KindHello, ResumeIncarnation: p.incarnation, ResumeSeq: p.lastSeq, Uptime: now.Sub(n.started)}
	n.send(id, resume)
	n.sendSync(id)
}

// LinkDown records the loss of link to node id. A closed link alone does
// not make the peer down: only silence for PeerTimeout does.
func (n *Node) LinkDown(id string, link uint64) {
	p := n.peers[id]
	if p == nil || !p.linked || p.link != link {
		return
	}
	p.linked, p.streaming = false, false
}

// markHeard notes that the peer is alive. A peer that was down comes back
// up, and because its entries were purged, it is asked for a full sync
// unless one is on its way already.
func (n *Node) markHeard(now time.Time, p *peer) {
	p.lastHeard = now
	if p.alive {
		return
	}
	p.alive = true
	n.effect(Effect{Kind: EffectPeerUp, Node: p.id})
	if !p.syncExpected {
		p.syncExpected = true
		n.send(p.id, &wire.Envelope{Kind: wire.KindSyncRequest})
	}
}

// markDown declares a peer down and purges its presence entries.
func (n *Node) markDown(p *peer, reason string) {
	p.alive = false
	n.purge(p)
	n.effect(Effect{Kind: EffectPeerDown, Node: p.id, Reason: reason})
}

// purge drops the peer's presence entries. A sync in progress is abandoned,
// and the peer is asked for a new one once it is heard again.
func (n *Node) purge(p *peer) {
	if brokenNoPurge {
		return
	}
	if len(p.view) > 0 {
		n.effect(Effect{Kind: EffectSyncPresence, Node: p.id})
	}
	if p.pending != nil {
		p.abandonedID = p.pendingID
	}
	p.view, p.pending = nil, nil
	p.awaitingSync, p.syncExpected = true, false
}

// Receive handles one envelope that arrived from node from on link.
// Envelopes of an earlier link or incarnation are dropped, because the new
// link's Hello and sync already cover what they carried.
func (n *Node) Receive(now time.Time, from string, link uint64, env *wire.Envelope) {
	p := n.peers[from]
	if p == nil || !p.linked || p.link != link || env.Origin != from || env.Incarnation != p.incarnation {
		return
	}
	if env.Kind == wire.KindLeave {
		if p.alive {
			n.markDown(p, DownLeft)
		} else {
			n.purge(p)
		}
		return
	}
	n.markHeard(now, p)
	if !p.helloSeen && env.Kind != wire.KindHello && env.Kind != wire.KindHeartbeat && env.Kind != wire.KindSyncRequest {
		return
	}

	switch env.Kind {
	case wire.KindHello:
		p.helloSeen = true
		n.resume(p, env)
	case wire.KindPublish:
		n.receivePublish(p, env)
	case wire.KindPresence:
		n.receiveDeltas(p, env.Deltas)
	case wire.KindSyncChunk:
		n.receiveSyncChunk(p, env)
	case wire.KindSyncRequest:
		n.sendSync(from)
	}
}

// resume answers a peer's Hello: it replays the publishes the peer missed,
// then lets new ones flow live. The peer measured its uptime when the link
// came up, so the age window is taken from that moment on this node's
// clock, however late the Hello is read.
func (n *Node) resume(p *peer, hello *wire.Envelope) {
	from := uint64(1)
	reconnect := hello.ResumeIncarnation == n.cfg.Incarnation
	if reconnect {
		from = hello.ResumeSeq + 1
	}
	items, lost := n.replay.since(from, p.linkedAt.Add(-hello.Uptime-replayMargin))
	if reconnect && from <= n.seq {
		n.out.Counters.ReplayRequests++
		n.out.Counters.ReplayLosses += int(lost)
	}
	replayed := 0
	for _, item := range items {
		if item.retracted {
			continue
		}
		n.send(p.id, &wire.Envelope{Kind: wire.KindPublish, Seq: item.seq, Message: item.msg})
		replayed++
	}
	n.out.Counters.MessagesReplayed += replayed
	p.streaming = true
}

// receivePublish delivers a publish once, in sequence order.
func (n *Node) receivePublish(p *peer, env *wire.Envelope) {
	if env.Seq <= p.lastSeq {
		n.out.Counters.DuplicatesDropped++
		return
	}
	p.lastSeq = env.Seq
	if brokenDropEvery > 0 && env.Seq%max(brokenDropEvery, 1) == 0 {
		return
	}
	n.effect(Effect{Kind: EffectDeliver, Node: p.id, Message: env.Message})
}

func (n *Node) receiveDeltas(p *peer, deltas []backplane.PresenceDelta) {
	target := p.view
	switch {
	case p.pending != nil:
		target = p.pending
	case p.awaitingSync:
		// The sync that is coming includes these changes.
		return
	}
	if target == nil {
		target = make(map[chanConn]backplane.PresenceEntry)
		p.view = target
	}
	accepted := deltas[:0:0]
	for _, d := range deltas {
		if d.Entry.Node != p.id {
			continue
		}
		applyDelta(target, d)
		accepted = append(accepted, d)
	}
	if p.pending == nil && len(accepted) > 0 {
		n.effect(Effect{Kind: EffectApplyPresence, Node: p.id, Deltas: accepted})
	}
}

func applyDelta(entries map[chanConn]backplane.PresenceEntry, d backplane.PresenceDelta) {
	key := chanConn{d.Entry.Channel, d.Entry.Conn}
	if d.Op == backplane.PresenceJoin {
		entries[key] = d.Entry
	} else {
		delete(entries, key)
	}
}

// receiveSyncChunk collects a full sync; its last chunk replaces the view.
func (n *Node) receiveSyncChunk(p *peer, env *wire.Envelope) {
	if env.SyncID == p.abandonedID {
		return
	}
	if p.pending == nil || p.pendingID != env.SyncID {
		p.pending, p.pendingID = make(map[chanConn]backplane.PresenceEntry), env.SyncID
	}
	for _, e := range env.Entries {
		if e.Node == p.id {
			p.pending[chanConn{e.Channel, e.Conn}] = e
		}
	}
	n.out.Counters.SyncEntriesReceived += len(env.Entries)
	if !env.Last {
		return
	}
	p.view, p.pending = p.pending, nil
	p.awaitingSync, p.syncExpected = false, false
	n.effect(Effect{Kind: EffectSyncPresence, Node: p.id, Entries: sortedEntries(p.view)})
}

// sendSync sends this node's presence entries to a peer in chunks that fit
// a frame. An empty sync is one chunk with Last set.
func (n *Node) sendSync(to string) {
	n.syncID++
	entries := sortedEntries(n.local)
	n.out.Counters.SyncEntriesSent += len(entries)
	chunk, size := []backplane.PresenceEntry{}, 0
	for _, e := range entries {
		entrySize := len(e.Channel) + len(e.Member) + len(e.Node) + len(e.Conn) + len(e.Info) + 16
		if len(chunk) > 0 && size+entrySize > n.cfg.SyncChunkBytes {
			n.send(to, &wire.Envelope{Kind: wire.KindSyncChunk, SyncID: n.syncID, Entries: chunk})
			chunk, size = []backplane.PresenceEntry{}, 0
		}
		chunk = append(chunk, e)
		size += entrySize
	}
	n.send(to, &wire.Envelope{Kind: wire.KindSyncChunk, SyncID: n.syncID, Entries: chunk, Last: true})
}

// sortedEntries returns entries in channel, then connection order, so that
// outputs are deterministic.
func sortedEntries(entries map[chanConn]backplane.PresenceEntry) []backplane.PresenceEntry {
	out := make([]backplane.PresenceEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Channel != out[j].Channel {
			return out[i].Channel < out[j].Channel
		}
		return out[i].Conn < out[j].Conn
	})
	return out
}
