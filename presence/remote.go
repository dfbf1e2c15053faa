package presence

import (
	"github.com/wscluster/wscluster/backplane"
)

// ApplyRemote implements backplane.PresenceHandler. Deltas carry node's own
// changes; entries that claim another node, this one included, are ignored,
// because a node may only speak for its own connections.
func (p *Presence) ApplyRemote(node string, deltas []backplane.PresenceDelta) {
	if node == p.cfg.NodeID {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range deltas {
		if d.Entry.Node != node {
			p.cfg.Logger.Warn("ignoring a presence change for another node", "from", node, "entry_node", d.Entry.Node)
			continue
		}
		switch d.Op {
		case backplane.PresenceJoin:
			p.addRemoteLocked(d.Entry)
		case backplane.PresenceLeave:
			p.removeRemoteLocked(node, chanConn{d.Entry.Channel, d.Entry.Conn})
		}
	}
}

// SyncNode implements backplane.PresenceHandler.
func (p *Presence) SyncNode(node string, entries []backplane.PresenceEntry) {
	if node == p.cfg.NodeID {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()

	desired := make(map[chanConn]backplane.PresenceEntry, len(entries))
	for _, e := range entries {
		if e.Node == node {
			desired[chanConn{e.Channel, e.Conn}] = e
		}
	}

	// Entries that are gone, or whose member id changed, are removed
	// first, so a member id that moves between connections emits its
	// events in a consistent order.
	for key, member := range p.remote[node] {
		if e, ok := desired[key]; !ok || e.Member != member {
			p.removeRemoteLocked(node, key)
		}
	}
	for _, e := range desired {
		p.addRemoteLocked(e)
	}
}

// LocalEntries implements backplane.PresenceHandler.
func (p *Presence) LocalEntries() []backplane.PresenceEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []backplane.PresenceEntry
	for c, joined := range p.local {
		for channel, member := range joined {
			if e, ok := p.channels[channel].members[member][connKey{p.cfg.NodeID, c.ID()}]; ok {
				out = append(out, e)
			}
		}
	}
	return out
}

func (p *Presence) addRemoteLocked(e backplane.PresenceEntry) {
	key := chanConn{e.Channel, e.Conn}
	entries := p.remote[e.Node]
	if member, ok := entries[key]; ok {
		if member != e.Member {
			p.removeRemoteLocked(e.Node, key)
		} else if old, ok := p.channels[e.Channel].members[member][connKey{e.Node, e.Conn}]; ok && sameEntry(old, e) {
			return
		}
	}
	if p.remote[e.Node] == nil {
		p.remote[e.Node] = make(map[chanConn]string)
	}
	if _, known := p.remote[e.Node][key]; !known {
		p.cfg.Metrics.PresenceEntries.WithLabelValues("remote").Inc()
	}
	p.remote[e.Node][key] = e.Member

	r := p.rosterLocked(e.Channel)
	if r.add(e) {
		p.broadcastJoinLocked(r, e)
	}
}

func (p *Presence) removeRemoteLocked(node string, key chanConn) {
	member, ok := p.remote[node][key]
	if !ok {
		return
	}
	delete(p.remote[node], key)
	if len(p.remote[node]) == 0 {
		delete(p.remote, node)
	}
	p.cfg.Metrics.PresenceEntries.WithLabelValues("remote").Dec()

	r := p.channels[key.channel]
	if r == nil {
		return
	}
	if _, gone := r.remove(member, node, key.conn); gone {
		p.broadcastLeaveLocked(r, key.channel, member)
	}
	p.dropIfEmptyLocked(key.channel, r)
}

var _ backplane.PresenceHandler = (*Presence)(nil)
