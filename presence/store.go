package presence

import (
	"bytes"
	"encoding/json"
	"sort"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/wsconn"
)

// connKey identifies one roster entry within a member: the connection and
// the node holding it.
type connKey struct {
	node, conn string
}

// roster is one channel's cluster-wide roster plus the local connections
// that joined it and so receive its events.
type roster struct {
	// members maps a member id to its entries, one per joined connection.
	members map[string]map[connKey]backplane.PresenceEntry
	// watchers are the local connections that joined this channel.
	watchers map[*wsconn.Conn]struct{}
}

func newRoster() *roster {
	return &roster{
		members:  make(map[string]map[connKey]backplane.PresenceEntry),
		watchers: make(map[*wsconn.Conn]struct{}),
	}
}

// add inserts or replaces an entry and reports whether its member id is new
// to the roster.
func (r *roster) add(e backplane.PresenceEntry) (memberIsNew bool) {
	entries := r.members[e.Member]
	if entries == nil {
		entries = make(map[connKey]backplane.PresenceEntry, 1)
		r.members[e.Member] = entries
		memberIsNew = true
	}
	entries[connKey{e.Node, e.Conn}] = e
	return memberIsNew
}

// remove deletes an entry. It reports whether the entry existed and whether
// it was the member id's last one.
func (r *roster) remove(member, node, conn string) (existed, memberGone bool) {
	entries := r.members[member]
	key := connKey{node, conn}
	if _, ok := entries[key]; !ok {
		return false, false
	}
	delete(entries, key)
	if len(entries) == 0 {
		delete(r.members, member)
		return true, true
	}
	return true, false
}

func (r *roster) empty() bool {
	return len(r.members) == 0 && len(r.watchers) == 0
}

// Connection is one connection of a roster member, as the protocol shows it.
type Connection struct {
	Node string          `json:"node"`
	Conn string          `json:"conn"`
	Info json.RawMessage `json:"info"`
}

// Member is one member id of a roster with its connections.
type Member struct {
	Member      string       `json:"member"`
	Connections []Connection `json:"connections"`
}

// list returns the roster sorted by member id, with each member's
// connections sorted by node, then connection id.
func (r *roster) list() []Member {
	out := make([]Member, 0, len(r.members))
	for id, entries := range r.members {
		m := Member{Member: id, Connections: make([]Connection, 0, len(entries))}
		for _, e := range entries {
			m.Connections = append(m.Connections, Connection{Node: e.Node, Conn: e.Conn, Info: e.Info})
		}
		sort.Slice(m.Connections, func(i, j int) bool {
			a, b := m.Connections[i], m.Connections[j]
			if a.Node != b.Node {
				return a.Node < b.Node
			}
			return a.Conn < b.Conn
		})
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out
}

// sameEntry reports whether two entries carry the same member and info, so
// that a sync need not replace one with the other.
func sameEntry(a, b backplane.PresenceEntry) bool {
	return a.Member == b.Member && bytes.Equal(a.Info, b.Info)
}
