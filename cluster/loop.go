package cluster

import (
	"time"

	"github.com/wscluster/wscluster/cluster/wire"

	"github.com/wscluster/wscluster/cluster/core"
)

// submit queues in for the loop. The queue is unbounded, so callers that
// hold locks of their own, like the presence protocol, never wait here. It
// returns false after Close.
func (c *Cluster) submit(in input) bool {
	return c.inbox.put(in)
}

// loop is the one goroutine that drives the core: local inputs, transport
// events and ticks, each followed by carrying out the core's output.
func (c *Cluster) loop() {
	defer close(c.done)
	tick := time.NewTicker(c.tickInterval())
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			// The last inputs, such as the leave from Close, still go
			// out. The inbox closes first, so no input is accepted that
			// would never run.
			c.inbox.close()
			c.runInbox()
			c.carryOut()
			return
		case <-c.inbox.wake:
			c.runInbox()
		case ev := <-c.events:
			c.handleEvent(ev)
		case now := <-tick.C:
			c.node.Tick(now)
		}
		c.carryOut()
	}
}

// tickInterval is a quarter heartbeat, so a silent peer is declared down
// within the peer timeout plus a quarter heartbeat.
func (c *Cluster) tickInterval() time.Duration {
	interval := c.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = time.Second
	}
	return max(interval/4, 10*time.Millisecond)
}

func (c *Cluster) runInbox() {
	inputs, _ := c.inbox.take()
	now := time.Now()
	for _, in := range inputs {
		in(now)
	}
}

func (c *Cluster) handleEvent(ev TransportEvent) {
	now := time.Now()
	switch ev.Kind {
	case EventLinkUp:
		c.log.Info("peer link up", "peer", ev.Peer, "incarnation", ev.Incarnation)
		c.node.LinkUp(now, ev.Peer, ev.Incarnation, ev.Link)
	case EventLinkDown:
		c.log.Info("peer link down", "peer", ev.Peer)
		c.node.LinkDown(ev.Peer, ev.Link)
	case EventEnvelope:
		c.node.Receive(now, ev.Peer, ev.Link, ev.Envelope)
	case EventEcho:
		c.deliverEcho(ev.Envelope)
	}
}

// deliverEcho delivers this node's own publish under a total order, once:
// a replay sent to another node can come back as a second echo.
func (c *Cluster) deliverEcho(env *wire.Envelope) {
	if !c.cfg.TotalOrder || env.Kind != wire.KindPublish || env.Seq <= c.lastEcho || c.messages == nil {
		return
	}
	c.lastEcho = env.Seq
	c.messages.Deliver(env.Message)
}

// carryOut sends the core's envelopes, applies its effects in order,
// reports the publishes sequenced since the last call and counts the
// core's counters.
func (c *Cluster) carryOut() {
	out := c.node.Drain()
	for _, s := range out.Sends {
		// A false Send means the link just went away; its LinkDown follows,
		// and the replay or sync after the next link covers the envelope.
		// An acknowledging transport is the medium itself, so there the
		// publish failed.
		if !c.cfg.Transport.Send(s.To, s.Envelope) && c.acks != nil {
			c.markUnsent(s.Envelope)
		}
	}
	for _, e := range out.Effects {
		c.apply(e)
	}
	c.complete()
	c.count(out.Counters)
	c.updateReady()
}

func (c *Cluster) apply(e core.Effect) {
	switch e.Kind {
	case core.EffectDeliver:
		if c.messages != nil {
			c.messages.Deliver(e.Message)
		}
	case core.EffectApplyPresence:
		if c.presence != nil {
			c.presence.ApplyRemote(e.Node, e.Deltas)
		}
	case core.EffectSyncPresence:
		if c.presence != nil {
			c.presence.SyncNode(e.Node, e.Entries)
		}
	case core.EffectPeerUp:
		c.peerEvent("up", e.Node, "")
	case core.EffectPeerDown:
		c.peerEvent("down", e.Node, e.Reason)
	}
}

func (c *Cluster) peerEvent(event, peer, reason string) {
	c.cfg.Metrics.PeerEvents.WithLabelValues(event).Inc()
	c.aliveMu.Lock()
	if c.alive == nil {
		c.alive = make(map[string]bool)
	}
	c.alive[peer] = event == "up"
	c.aliveMu.Unlock()

	c.callbacksMu.Lock()
	callbacks := c.onUp
	if event == "down" {
		callbacks = c.onDown
	}
	callbacks = append([]func(string){}, callbacks...)
	c.callbacksMu.Unlock()

	switch {
	case event == "up":
		c.log.Info("peer up", "peer", peer)
	case reason == core.DownTimeout:
		c.log.Warn("peer down: silent for the peer timeout, its presence members are purged", "peer", peer)
	default:
		c.log.Info("peer down: its presence members are purged", "peer", peer, "reason", reason)
	}
	for _, f := range callbacks {
		f(peer)
	}
}

func (c *Cluster) count(k core.Counters) {
	m := c.cfg.Metrics
	m.DuplicatesDropped.Add(float64(k.DuplicatesDropped))
	m.ReplayRequests.Add(float64(k.ReplayRequests))
	m.MessagesReplayed.Add(float64(k.MessagesReplayed))
	m.PresenceSyncEntries.WithLabelValues("sent").Add(float64(k.SyncEntriesSent))
	m.PresenceSyncEntries.WithLabelValues("received").Add(float64(k.SyncEntriesReceived))
	if k.ReplayLosses > 0 {
		m.ReplayLosses.Add(float64(k.ReplayLosses))
		c.log.Warn("publishes lost: a peer missed more than the replay buffer holds", "lost", k.ReplayLosses)
	}
}

func (c *Cluster) updateReady() {
	alive := c.node.AlivePeerCount()
	c.connected.Store(int64(alive))
	if r, ok := c.cfg.Transport.(Readier); ok {
		c.ready.Store(r.Ready())
		return
	}
	c.ready.Store(c.cfg.Transport.KnownAddrCount() == 0 || alive > 0)
}
