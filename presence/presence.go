// Package presence is the Presence protocol: the presence.join,
// presence.leave and presence.members methods and the presence.join and
// presence.leave notifications.
//
// One store holds the cluster-wide roster of every channel: the entries of
// this node's connections and those that a cluster engine replicates from
// other nodes. Events are per member id: presence.join when a member id's
// first connection appears anywhere in the cluster, presence.leave when its
// last one is gone. Every change, local or remote, and every reply that
// carries a roster happen under one lock, so a client that applies the
// events after its join result in order always ends with the current roster.
package presence

import (
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/metrics"
	"github.com/wscluster/wscluster/rpc"
	"github.com/wscluster/wscluster/wsconn"
)

// Config configures a Presence.
type Config struct {
	// NodeID is this node's --node-id. Required.
	NodeID string
	// Backplane replicates local changes to other nodes. Required.
	Backplane backplane.Backplane
	// Metrics receives gauges and counters. Required.
	Metrics *metrics.Metrics
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
}

// chanConn identifies a connection's entry in one channel.
type chanConn struct {
	channel, conn string
}

// Presence serves the presence methods and implements
// backplane.PresenceHandler.
type Presence struct {
	cfg Config

	mu       sync.Mutex
	channels map[string]*roster
	// local maps each local connection to the channels it joined and the
	// member id it joined each as.
	local map[*wsconn.Conn]map[string]string
	// remote maps a node id to its entries' channels, connections and
	// member ids, so a sync or purge touches only that node's entries.
	remote map[string]map[chanConn]string
}

// New returns a Presence. It panics when cfg lacks a required field, because
// that is a programming error.
func New(cfg Config) *Presence {
	if cfg.NodeID == "" || cfg.Backplane == nil || cfg.Metrics == nil {
		panic("presence: Config.NodeID, Config.Backplane and Config.Metrics are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Presence{
		cfg:      cfg,
		channels: make(map[string]*roster),
		local:    make(map[*wsconn.Conn]map[string]string),
		remote:   make(map[string]map[chanConn]string),
	}
}

// Methods returns the JSON-RPC methods this protocol serves.
func (p *Presence) Methods() []string {
	return []string{"presence.join", "presence.leave", "presence.members"}
}

// Handle serves one request of c.
func (p *Presence) Handle(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	switch req.Method {
	case "presence.join":
		p.join(c, req, reply)
	case "presence.leave":
		p.leave(c, req, reply)
	case "presence.members":
		p.members(c, req, reply)
	default:
		reply(nil, rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q", req.Method))
	}
}

type rosterResult struct {
	Channel string   `json:"channel"`
	Members []Member `json:"members"`
}

type channelResult struct {
	Channel string `json:"channel"`
}

type joinParams struct {
	Channel *string         `json:"channel"`
	Member  *string         `json:"member"`
	Info    json.RawMessage `json:"info"`
}

func decodeJoin(params json.RawMessage) (channel, member string, info json.RawMessage, perr *rpc.Error) {
	var jp joinParams
	if err := rpc.UnmarshalParams(params, &jp); err != nil {
		return "", "", nil, err
	}
	if jp.Channel == nil {
		return "", "", nil, rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "channel"`)
	}
	if jp.Member == nil {
		return "", "", nil, rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "member", the member id to join as`)
	}
	if perr = rpc.CheckChannel(*jp.Channel); perr != nil {
		return "", "", nil, perr
	}
	if perr = rpc.CheckMember(*jp.Member); perr != nil {
		return "", "", nil, perr
	}
	info, perr = rpc.CompactInfo(jp.Info)
	return *jp.Channel, *jp.Member, info, perr
}

func decodeChannel(params json.RawMessage) (string, *rpc.Error) {
	var cp struct {
		Channel *string `json:"channel"`
	}
	if err := rpc.UnmarshalParams(params, &cp); err != nil {
		return "", err
	}
	if cp.Channel == nil {
		return "", rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "channel"`)
	}
	return *cp.Channel, rpc.CheckChannel(*cp.Channel)
}

func (p *Presence) join(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	channel, member, info, perr := decodeJoin(req.Params)
	if perr == nil {
		perr = authorizeJoin(c, channel, member)
	}
	if perr != nil {
		reply(nil, perr)
		return
	}
	entry := backplane.PresenceEntry{Channel: channel, Member: member, Node: p.cfg.NodeID, Conn: c.ID(), Info: info}

	p.mu.Lock()
	defer p.mu.Unlock()
	joined := p.local[c]
	if current, ok := joined[channel]; ok && current != member {
		reply(nil, rpc.Errorf(rpc.CodeAlreadyJoined,
			"already joined channel %q as member %q: leave it first to join as %q", channel, current, member))
		return
	}
	if joined == nil {
		joined = make(map[string]string)
		p.local[c] = joined
	}
	_, rejoin := joined[channel]
	joined[channel] = member

	// A repeated join only refreshes the info. A first join makes c a
	// watcher after the event went out, because a connection gets no event
	// for its own join.
	r := p.rosterLocked(channel)
	if r.add(entry) {
		p.broadcastJoinLocked(r, entry)
	}
	if !rejoin {
		r.watchers[c] = struct{}{}
		p.cfg.Metrics.PresenceEntries.WithLabelValues("local").Inc()
	}
	p.cfg.Backplane.PresenceChanged(backplane.PresenceDelta{Op: backplane.PresenceJoin, Entry: entry})
	reply(rosterResult{Channel: channel, Members: r.list()}, nil)
}

// authorizeJoin returns error 1006 unless c's token allows joining channel
// as member.
func authorizeJoin(c *wsconn.Conn, channel, member string) *rpc.Error {
	id := c.Identity()
	if !id.MayJoinAs(member) {
		return rpc.Errorf(rpc.CodeNotAuthorized, "not authorized: the token allows joining only as member %q, not %q", id.Subject, member)
	}
	if !id.MayUseChannel(channel) {
		return notAuthorizedChannel(channel)
	}
	return nil
}

func notAuthorizedChannel(channel string) *rpc.Error {
	return rpc.Errorf(rpc.CodeNotAuthorized, "not authorized: the token's channels claim does not allow channel %q", channel)
}

func (p *Presence) leave(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	channel, perr := decodeChannel(req.Params)
	if perr != nil {
		reply(nil, perr)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leaveLocked(c, channel)
	reply(channelResult{Channel: channel}, nil)
}

// leaveLocked removes c's entry from channel, if any, and replicates it.
func (p *Presence) leaveLocked(c *wsconn.Conn, channel string) {
	member, ok := p.local[c][channel]
	if !ok {
		return
	}
	delete(p.local[c], channel)
	if len(p.local[c]) == 0 {
		delete(p.local, c)
	}
	r := p.channels[channel]
	delete(r.watchers, c)
	p.cfg.Metrics.PresenceEntries.WithLabelValues("local").Dec()
	if _, gone := r.remove(member, p.cfg.NodeID, c.ID()); gone {
		p.broadcastLeaveLocked(r, channel, member)
	}
	p.dropIfEmptyLocked(channel, r)
	entry := backplane.PresenceEntry{Channel: channel, Member: member, Node: p.cfg.NodeID, Conn: c.ID()}
	p.cfg.Backplane.PresenceChanged(backplane.PresenceDelta{Op: backplane.PresenceLeave, Entry: entry})
}

func (p *Presence) members(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	channel, perr := decodeChannel(req.Params)
	if perr == nil && !c.Identity().MayUseChannel(channel) {
		perr = notAuthorizedChannel(channel)
	}
	if perr != nil {
		reply(nil, perr)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	members := []Member{}
	if r := p.channels[channel]; r != nil {
		members = r.list()
	}
	reply(rosterResult{Channel: channel, Members: members}, nil)
}

// Disconnected removes every entry of c, as if it had left each channel.
func (p *Presence) Disconnected(c *wsconn.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for channel := range p.local[c] {
		p.leaveLocked(c, channel)
	}
}

// Members returns the current cluster-wide roster of channel.
func (p *Presence) Members(channel string) []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.channels[channel]; r != nil {
		return r.list()
	}
	return []Member{}
}

func (p *Presence) rosterLocked(channel string) *roster {
	r := p.channels[channel]
	if r == nil {
		r = newRoster()
		p.channels[channel] = r
	}
	return r
}

func (p *Presence) dropIfEmptyLocked(channel string, r *roster) {
	if r.empty() {
		delete(p.channels, channel)
	}
}

type joinEvent struct {
	Channel string          `json:"channel"`
	Member  string          `json:"member"`
	Node    string          `json:"node"`
	Conn    string          `json:"conn"`
	Info    json.RawMessage `json:"info"`
}

type leaveEvent struct {
	Channel string `json:"channel"`
	Member  string `json:"member"`
}

func (p *Presence) broadcastJoinLocked(r *roster, e backplane.PresenceEntry) {
	p.cfg.Metrics.PresenceEvents.WithLabelValues("join").Inc()
	p.broadcastLocked(r, "presence.join", joinEvent{Channel: e.Channel, Member: e.Member, Node: e.Node, Conn: e.Conn, Info: e.Info})
}

func (p *Presence) broadcastLeaveLocked(r *roster, channel, member string) {
	p.cfg.Metrics.PresenceEvents.WithLabelValues("leave").Inc()
	p.broadcastLocked(r, "presence.leave", leaveEvent{Channel: channel, Member: member})
}

// broadcastLocked encodes an event once and queues it to every watcher.
func (p *Presence) broadcastLocked(r *roster, method string, params any) {
	if len(r.watchers) == 0 {
		return
	}
	payload, err := rpc.EncodeNotification(method, params)
	if err != nil {
		p.cfg.Logger.Error("encoding a presence event failed", "method", method, "err", err)
		return
	}
	frame := wsconn.TextFrame(payload)
	for w := range r.watchers {
		// A failed Send means the watcher is closing, and its own
		// disconnect cleans up; nothing else is to be done here.
		_ = w.Send(frame)
	}
}
