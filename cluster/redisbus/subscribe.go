package redisbus

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/wire"
)

// subscribeLoop keeps one subscription open for the life of the transport.
// A subscription that fails, or stays silent for longer than silenceLimit
// although this node's own heartbeats should come back, is closed and
// opened again, with a backoff capped at the heartbeat interval.
func (t *Transport) subscribeLoop() {
	defer t.wg.Done()
	backoff := 50 * time.Millisecond
	for t.ctx.Err() == nil {
		err := t.runSubscription()
		t.lostSubscription(err)
		if t.ctx.Err() != nil {
			return
		}
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, t.cfg.HeartbeatInterval)
	}
}

// runSubscription subscribes and reads until the subscription fails or
// stalls, or the transport closes.
func (t *Transport) runSubscription() error {
	ps := t.client.Subscribe(t.ctx, t.cfg.Channel)
	defer ps.Close()
	lastHeard := time.Now()
	for {
		// ReceiveTimeout of go-redis v9.23 does not return when its
		// context is canceled, so while other nodes keep the channel busy
		// only this check lets Close end the loop.
		if err := t.ctx.Err(); err != nil {
			return err
		}
		msg, err := ps.ReceiveTimeout(t.ctx, t.silenceCheckInterval())
		var timeout interface{ Timeout() bool }
		switch {
		case err != nil && errors.As(err, &timeout) && timeout.Timeout():
			if silent, limit := time.Since(lastHeard), t.silenceLimit(); silent > limit {
				return fmt.Errorf("no message, not even this node's own heartbeat, for %v (the limit is %v)",
					silent.Round(time.Millisecond), limit.Round(time.Millisecond))
			}
			continue
		case err != nil:
			return err
		}
		lastHeard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				t.subscribedAgain()
			}
		case *redis.Message:
			t.receive([]byte(m.Payload))
		}
	}
}

// silenceLimit is how long a subscription may hear nothing before it is
// closed: two heartbeat intervals and a round trip to Redis, so that a slow
// link is not taken for a broken one. It never exceeds the peer timeout
// less half a heartbeat, checked every quarter heartbeat, so that a paused
// Redis is noticed before the node's PUBLISH pipelines time out. A peer
// timeout under 2.5 heartbeat intervals leaves no room for that, and the
// limit stays at two intervals.
func (t *Transport) silenceLimit() time.Duration {
	h := t.cfg.HeartbeatInterval
	limit := 2*h + t.roundTrip.estimate(time.Now())
	return max(min(limit, t.cfg.PeerTimeout-h/2), 2*h)
}

// silenceCheckInterval is how often a subscription that hears nothing
// checks its silence.
func (t *Transport) silenceCheckInterval() time.Duration {
	return max(t.cfg.HeartbeatInterval/4, 10*time.Millisecond)
}

// subscribedAgain starts a new session: every known peer gets a new link,
// so the core exchanges Hello, replay and a full sync with it, because
// whatever was published while this node was not subscribed is lost.
func (t *Transport) subscribedAgain() {
	t.cfg.Metrics.RedisResubscribes.Inc()
	t.mu.Lock()
	t.session = t.newSessionLocked()
	t.subscribed = true
	// An echo of the last session proves nothing about this one.
	t.lastEcho = time.Time{}
	relink := t.relinkAllLocked()
	t.mu.Unlock()
	t.log.Info("subscribed to the redis channel", "channel", t.cfg.Channel)
	for _, ev := range relink {
		t.emit(ev)
	}
}

// relinkAllLocked replaces the link of every known peer and returns the
// link events to emit.
func (t *Transport) relinkAllLocked() []cluster.TransportEvent {
	var out []cluster.TransportEvent
	for id, p := range t.peers {
		if p.linked {
			out = append(out, cluster.TransportEvent{Kind: cluster.EventLinkDown, Peer: id, Link: p.link})
		}
		t.linkSeq++
		p.link, p.linked = t.linkSeq, true
		out = append(out, cluster.TransportEvent{Kind: cluster.EventLinkUp, Peer: id, Link: p.link, Incarnation: p.incarnation})
	}
	return out
}

// lostSubscription marks the node not ready and every link down; the next
// confirmed SUBSCRIBE brings new links.
func (t *Transport) lostSubscription(err error) {
	if t.ctx.Err() != nil {
		return
	}
	t.cfg.Metrics.RedisReconnects.Inc()
	if isAuthError(err) {
		t.logRepeated("redis rejected the credentials; check --redis-username and --redis-password; retrying", err)
	} else {
		t.logRepeated("redis subscription lost; subscribing again", err)
	}
	t.mu.Lock()
	t.subscribed = false
	var down []cluster.TransportEvent
	for id, p := range t.peers {
		if p.linked {
			p.linked = false
			down = append(down, cluster.TransportEvent{Kind: cluster.EventLinkDown, Peer: id, Link: p.link})
		}
	}
	t.mu.Unlock()
	for _, ev := range down {
		t.emit(ev)
	}
}

// receive handles one message of the channel.
func (t *Transport) receive(payload []byte) {
	t.cfg.Metrics.RedisMessagesIn.Inc()
	if len(payload) > t.cfg.MaxFrameBytes {
		t.cfg.Metrics.PeerLinkRejects.WithLabelValues("oversized").Inc()
		t.logRepeated("dropping an oversized message from the redis channel", nil)
		return
	}
	h, env, err := decodeMessage(payload)
	if err != nil {
		t.cfg.Metrics.PeerLinkRejects.WithLabelValues("malformed").Inc()
		t.logRepeated("dropping a malformed message from the redis channel", err)
		return
	}
	if env.Origin == t.cfg.NodeID {
		t.receiveOwn(h, env)
		return
	}
	if h.to != "" && h.to != t.cfg.NodeID {
		return
	}
	events, link, stale := t.linkFor(env.Origin, env.Incarnation, h.session)
	if stale {
		t.cfg.Metrics.PeerLinkRejects.WithLabelValues("stale_session").Inc()
		return
	}
	for _, ev := range events {
		t.emit(ev)
	}
	t.cfg.Metrics.PeerEnvelopesReceived.WithLabelValues(env.Origin, env.Kind.String()).Inc()
	t.emit(cluster.TransportEvent{Kind: cluster.EventEnvelope, Peer: env.Origin, Link: link, Envelope: env})
}

// receiveOwn handles this node's own message coming back: a heartbeat of
// the current session proves the subscription works, and a publish is
// handed on for delivery under a total order.
func (t *Transport) receiveOwn(h header, env *wire.Envelope) {
	t.cfg.Metrics.RedisEchoDrops.Inc()
	if env.Incarnation != t.cfg.Incarnation {
		t.log.Error("another node uses this node's id; give each node a unique --node-id", "incarnation", env.Incarnation)
		return
	}
	t.mu.Lock()
	current := h.session == t.session
	if current && env.Kind == wire.KindHeartbeat {
		t.lastEcho = time.Now()
	}
	t.mu.Unlock()
	if env.Kind == wire.KindPublish && h.to == "" {
		t.emit(cluster.TransportEvent{Kind: cluster.EventEcho, Peer: t.cfg.NodeID, Envelope: env})
	}
}

// linkFor returns the events that bring the link to node id up to date, and
// the link's id: a first link, or a new one when the node restarted (new
// incarnation) or subscribed again (new session).
func (t *Transport) linkFor(id string, incarnation, session uint64) (events []cluster.TransportEvent, link uint64, stale bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p != nil && p.incarnation == incarnation && session < p.session {
		// A message of a session the peer already left, delivered late.
		// Taking it would re-link to the old session, and the peer, which
		// never left its new one, would send no sync for that link.
		return nil, 0, true
	}
	if p != nil && p.linked && p.incarnation == incarnation && p.session == session {
		p.lastHeard = time.Now()
		return nil, p.link, false
	}
	var out []cluster.TransportEvent
	if p == nil {
		p = &peerLink{addr: "redis:" + t.cfg.Channel}
		t.peers[id] = p
	} else if p.linked {
		out = append(out, cluster.TransportEvent{Kind: cluster.EventLinkDown, Peer: id, Link: p.link})
	}
	t.linkSeq++
	p.incarnation, p.session, p.link, p.linked = incarnation, session, t.linkSeq, true
	p.lastHeard = time.Now()
	return append(out, cluster.TransportEvent{Kind: cluster.EventLinkUp, Peer: id, Link: p.link, Incarnation: incarnation}), p.link, false
}

// isAuthError reports whether Redis rejected the credentials, which no
// retry fixes until the configuration changes.
func isAuthError(err error) bool {
	if err == nil {
		return false
	}
	text := err.Error()
	return strings.Contains(text, "WRONGPASS") || strings.Contains(text, "NOAUTH") || strings.Contains(text, "NOPERM")
}
