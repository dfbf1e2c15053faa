// Package redisbus is the transport of the redis cluster engine: every node
// publishes its envelopes to one Redis Pub/Sub channel and subscribes to it.
//
// Each message on the channel is a small header (the addressee, empty for
// every node, and the sender's session) followed by a wire envelope. A
// session is a random number drawn at every confirmed SUBSCRIBE. Redis Pub/Sub
// loses what a subscriber misses while it reconnects. So a new session on
// either side counts as a new link between the two nodes, and the core
// exchanges Hello, replay and a full presence sync over it, which closes
// the gap.
//
// The node is ready while its subscription is confirmed and its own
// heartbeats come back within the peer timeout. The echo catches a paused
// or wedged Redis whose socket stays open.
package redisbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

// ErrNotPublished is returned by Acknowledged for an envelope that Redis did
// not take: it was never written to Redis, or Redis replied with an error.
// An envelope that was written but got no reply in time gets an error
// wrapping backplane.ErrUnconfirmed instead, because Redis may still run it.
var ErrNotPublished = errors.New("redis did not take the message")

// Config configures a Transport. Zero fields take the documented defaults.
type Config struct {
	// NodeID and Incarnation identify this node. Required.
	NodeID      string
	Incarnation uint64
	// Channel is the one Pub/Sub channel of the backplane. Default "wscluster".
	Channel string
	// Addr is the Redis host:port. Default "127.0.0.1:6379". Ignored with
	// SentinelAddrs.
	Addr string
	// Username and Password are ACL credentials.
	Username, Password string
	// TLS, when set, makes every Redis connection TLS.
	TLS *tls.Config
	// SentinelAddrs and SentinelMaster select the primary through Redis
	// Sentinel; the node follows a failover to the new primary.
	SentinelAddrs  []string
	SentinelMaster string
	// HeartbeatInterval is how often the core sends heartbeats. A
	// subscription silent for twice that plus a round trip to Redis, but
	// never for longer than PeerTimeout less half an interval, is opened
	// again. Default 1s.
	HeartbeatInterval time.Duration
	// PeerTimeout bounds the age of the last own heartbeat echo while
	// ready. Default 3s.
	PeerTimeout time.Duration
	// MaxFrameBytes is the largest message accepted from the channel.
	// Default 128 KiB.
	MaxFrameBytes int
	// QueueLength bounds the messages waiting to be published. A full queue
	// starts a new session, so peers recover what was dropped by replay.
	// Default 8192.
	QueueLength int
	// Logger and Metrics are required in practice; Logger defaults to
	// slog.Default().
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

func (c *Config) setDefaults() {
	if c.Channel == "" {
		c.Channel = "wscluster"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:6379"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 3 * time.Second
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 128 << 10
	}
	if c.QueueLength <= 0 {
		c.QueueLength = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// peerLink is the transport's state of one other node.
type peerLink struct {
	addr        string
	incarnation uint64
	session     uint64
	link        uint64
	linked      bool
	lastHeard   time.Time
}

// forgetAfter is how long a silent node stays in Peers, in peer timeouts.
const forgetAfter = 10

// outgoing is one message waiting to be published.
type outgoing struct {
	payload []byte
	ack     *ack
}

// ack carries the outcome of one publish to the caller waiting for it.
type ack struct {
	done chan struct{}
	err  error
}

// Transport implements cluster.Transport over Redis Pub/Sub.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	client redis.UniversalClient
	queue  chan outgoing
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	events     chan<- cluster.TransportEvent
	session    uint64
	sessions   uint64
	subscribed bool
	lastEcho   time.Time
	peers      map[string]*peerLink
	linkSeq    uint64
	acks       map[*wire.Envelope]*ack
	closed     bool
	// logged holds when each repeated warning was last logged.
	logged sync.Map
	// roundTrip is read by the subscription and written by the publisher.
	roundTrip roundTrip
}

// New returns a Transport. It connects nothing until Start.
func New(cfg Config) (*Transport, error) {
	if cfg.NodeID == "" || cfg.Incarnation == 0 || cfg.Metrics == nil {
		return nil, errors.New("redisbus: Config.NodeID, Incarnation and Metrics are required")
	}
	cfg.setDefaults()
	t := &Transport{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "redis"),
		queue: make(chan outgoing, cfg.QueueLength),
		peers: make(map[string]*peerLink),
		acks:  make(map[*wire.Envelope]*ack),
	}
	t.client = newClient(cfg)
	return t, nil
}

func newClient(cfg Config) redis.UniversalClient {
	if len(cfg.SentinelAddrs) > 0 {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:    cfg.SentinelMaster,
			SentinelAddrs: cfg.SentinelAddrs,
			Username:      cfg.Username,
			Password:      cfg.Password,
			TLSConfig:     cfg.TLS,
			MaxRetries:    -1,
			// Without it go-redis ignores context deadlines and waits
			// for its 5 s socket timeouts, so a publish to a paused
			// Redis would not fail after the peer timeout.
			ContextTimeoutEnabled: true,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:       cfg.Addr,
		Username:   cfg.Username,
		Password:   cfg.Password,
		TLSConfig:  cfg.TLS,
		MaxRetries: -1,
		// See the failover client above.
		ContextTimeoutEnabled: true,
	})
}

// Start subscribes and starts publishing. Events go to events until Close.
func (t *Transport) Start(events chan<- cluster.TransportEvent) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.events != nil {
		return errors.New("redisbus: Start called twice")
	}
	t.events = events
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(2)
	go t.subscribeLoop()
	go t.publishLoop()
	t.log.Info("redis transport started", "channel", t.cfg.Channel, "sentinel", len(t.cfg.SentinelAddrs) > 0, "tls", t.cfg.TLS != nil)
	return nil
}

// Ready reports whether the subscription is confirmed and this node's own
// heartbeat came back within the peer timeout.
func (t *Transport) Ready() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.subscribed && !t.lastEcho.IsZero() && time.Since(t.lastEcho) <= t.cfg.PeerTimeout
}

// Peers returns the nodes heard over Redis, sorted by id. A node is linked
// while it was heard within the peer timeout; one silent for ten peer
// timeouts is forgotten.
func (t *Transport) Peers() []backplane.PeerStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetSilentLocked()
	out := make([]backplane.PeerStatus, 0, len(t.peers))
	for id, p := range t.peers {
		fresh := time.Since(p.lastHeard) <= t.cfg.PeerTimeout
		out = append(out, backplane.PeerStatus{ID: id, Addr: p.addr, Connected: p.linked && fresh})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// KnownAddrCount returns the number of nodes heard over Redis lately.
func (t *Transport) KnownAddrCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetSilentLocked()
	return len(t.peers)
}

func (t *Transport) forgetSilentLocked() {
	for id, p := range t.peers {
		if time.Since(p.lastHeard) > forgetAfter*t.cfg.PeerTimeout {
			delete(t.peers, id)
		}
	}
}

// Close stops publishing and subscribing. It is safe to call twice.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	cancel := t.cancel
	t.mu.Unlock()

	// The queue gets a moment to drain, so a leave sent just before Close
	// goes out.
	deadline := time.Now().Add(time.Second)
	for len(t.queue) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if cancel != nil {
		cancel()
	}
	t.wg.Wait()
	return t.client.Close()
}

// newSessionLocked returns the next session of this incarnation. Sessions
// only grow, so a peer can tell a message of an earlier session that Redis
// delivers late, such as a PUBLISH retransmitted after a partition heals,
// from a new session, and drop it. Callers hold t.mu.
func (t *Transport) newSessionLocked() uint64 {
	t.sessions++
	return t.sessions
}

// emit sends an event to the cluster unless the transport is closing.
func (t *Transport) emit(ev cluster.TransportEvent) {
	select {
	case t.events <- ev:
	case <-t.ctx.Done():
	}
}

var _ cluster.Transport = (*Transport)(nil)
var _ cluster.Readier = (*Transport)(nil)
var _ cluster.Acknowledger = (*Transport)(nil)

func describe(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprint(err)
}
