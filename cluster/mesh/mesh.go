// Package mesh is the TCP transport of the mesh cluster engine. It keeps one
// authenticated link to every other node of the cluster, optionally over
// mutual TLS, and moves wire envelopes over those links.
//
// The transport decides nothing about peers being up or down. It reports
// links coming up and going down and the envelopes read from them, and the
// cluster core decides liveness from heartbeats. A closed link is redialed
// with backoff.
//
// Every connection starts with a handshake in both directions. Each side
// sends a hello (magic "WSCL", protocol version, node id, incarnation,
// advertised address and a fresh 32-byte nonce), then an HMAC-SHA256 proof,
// keyed by the cluster secret, over its role and both hellos. Because the
// proof covers the other side's fresh nonce and the sender's role, a
// recorded handshake can be neither replayed nor reflected, and the secret
// never crosses the wire. Last, each side sends a one-byte verdict, and the
// link goes live only when both accept it. The verdicts keep exactly one
// link per pair of nodes when both dial at once, and reject a second node
// that uses an id already linked.
//
// After the handshake, each frame is a 4-byte big-endian length followed by
// one envelope in the wire encoding. A zero length is a keepalive, sent
// when a link has been idle for a heartbeat interval, so that silence on a
// link means a dead link.
package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

// Errors returned by New, Start and Close.
var (
	// ErrInvalidConfig is wrapped by every error of New about a Config
	// field.
	ErrInvalidConfig = errors.New("invalid mesh config")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("mesh transport closed")
	// ErrStarted is returned by a second call of Start.
	ErrStarted = errors.New("mesh transport already started")
)

// Defaults of the Config fields left zero.
const (
	DefaultListenAddr        = ":5410"
	DefaultHeartbeatInterval = time.Second
	DefaultPeerTimeout       = 3 * time.Second
	// DefaultMaxFrameBytes leaves room for a publish of 64 KiB (the
	// default --max-message-bytes) plus its channel name, ids and header.
	DefaultMaxFrameBytes    = 64<<10 + 64<<10
	DefaultOutboundQueue    = 8192
	DefaultResolveInterval  = 5 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
)

// Config configures a Transport. Zero fields take the documented defaults.
type Config struct {
	// NodeID is this node's id: 1-64 of [A-Za-z0-9._-]. Required.
	NodeID string
	// Incarnation is a random number drawn at each start, so that peers
	// can tell a restart from the same run. Required, not zero.
	Incarnation uint64
	// ListenAddr is the address of the cluster listener (--cluster-listen).
	// Default ":5410".
	ListenAddr string
	// AdvertiseAddr is the host:port other nodes use to reach this one
	// (--cluster-advertise). Default: the listener's address, or the host
	// name with the listener's port when the listener is on every
	// interface.
	AdvertiseAddr string
	// Peers are host:port addresses to dial (--peers). A host that is a
	// DNS name is dialed at every address it resolves to, with the entry's
	// port.
	Peers []string
	// PeerExchange makes nodes tell each other the addresses they know and
	// dial the addresses they learn (--peer-exchange). Without it, a node
	// dials only Peers, and accepts but never dials back other nodes.
	PeerExchange bool
	// Secret is the shared secret every peer must prove it knows
	// (--cluster-secret). Empty means an open mesh that any node able to
	// connect may join, and Start logs a warning.
	Secret string
	// TLS, when set, makes every link mutual TLS: each side presents its
	// certificate and verifies the other's. LoadTLS builds it from the
	// --cluster-tls-* files. A dialer verifies the host name it dialed
	// unless TLS.ServerName is set.
	TLS *tls.Config
	// HeartbeatInterval caps the reconnect backoff and is the idle time
	// after which a link carries a keepalive. Default 1s.
	HeartbeatInterval time.Duration
	// PeerTimeout is the silence after which another connection from the
	// same node id may replace a link. A link silent for twice as long,
	// and for at least three heartbeat intervals, is closed as dead.
	// Default 3s.
	PeerTimeout time.Duration
	// ForgetAfter is how long a learned address may stay unreachable
	// before it is forgotten. Addresses from Peers are never forgotten.
	// Default 10 x PeerTimeout.
	ForgetAfter time.Duration
	// MaxFrameBytes is the largest encoded envelope accepted from a peer, and
	// a larger frame drops the link. Default 128 KiB.
	MaxFrameBytes int
	// OutboundQueue is the number of envelopes queued per link. A Send
	// that finds the queue full closes the link. Default 8192.
	OutboundQueue int
	// ResolveInterval is how often DNS names in Peers are resolved again.
	// Default 5s.
	ResolveInterval time.Duration
	// HandshakeTimeout bounds a dial, and then the TLS and mesh
	// handshakes of the connection. Default 5s.
	HandshakeTimeout time.Duration
	// LookupHost resolves a host name to addresses. Default
	// net.DefaultResolver.LookupHost.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Logger receives the transport's log lines. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the wscluster_peer_* counters. Required.
	Metrics *metrics.Metrics
}

// EventKind is the type of an Event.
type EventKind uint8

// Event kinds.
const (
	// EventLinkUp reports a new link to Peer.
	EventLinkUp EventKind = iota + 1
	// EventLinkDown reports the loss of the link of an earlier
	// EventLinkUp. It does not mean the peer is down.
	EventLinkDown
	// EventEnvelope carries an envelope read from the link to Peer.
	EventEnvelope
)

func (k EventKind) String() string {
	switch k {
	case EventLinkUp:
		return "link_up"
	case EventLinkDown:
		return "link_down"
	case EventEnvelope:
		return "envelope"
	}
	return "unknown"
}

// Event is one report of the transport. The events of one link arrive in
// order: EventLinkUp, its envelopes as the peer sent them, EventLinkDown.
// The EventLinkDown of a peer's link arrives before the EventLinkUp of its
// next link.
type Event struct {
	Kind EventKind
	// Peer is the peer's node id.
	Peer string
	// Link identifies the link. Ids are unique within a Transport.
	Link uint64
	// Incarnation is the peer's incarnation from the handshake (link
	// events).
	Incarnation uint64
	// Addr is the peer's advertised address (link events).
	Addr string
	// Envelope is the envelope read (EventEnvelope). Its Origin and
	// Incarnation are those of the link's handshake.
	Envelope *wire.Envelope
}

// PeerStatus describes one known peer.
type PeerStatus struct {
	// ID is the peer's node id, empty if no handshake with it succeeded.
	ID string
	// Addr is the peer's advertised address, or the address known for it.
	Addr string
	// Connected is true while a link to the peer is up.
	Connected bool
}

// Transport keeps the links of one node. Create it with New, start it with
// Start and stop it with Close.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics.Metrics
	secret   []byte
	entries  []peerEntry
	rejects  logLimiter
	linkIdle time.Duration // silence after which a link is closed as dead

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// handshakeSlots bounds concurrent inbound handshakes.
	handshakeSlots chan struct{}
	// wakeDial makes the dial loop look at the address book again.
	wakeDial chan struct{}
	// bookChanged makes the exchange loop send the known addresses.
	bookChanged chan struct{}

	mu         sync.RWMutex
	started    bool
	closed     bool
	ln         net.Listener
	events     chan<- Event
	advertise  string
	selfAddrs  map[string]bool
	conns      map[net.Conn]struct{} // every open connection, closed by Close
	links      map[string]*link      // committed links by peer id
	pending    map[string]*link      // links reserved in a handshake this node decides
	lastLink   map[string]*link      // the latest link of each peer, until its LinkDown is sent
	everLinked map[string]bool       // peers that had a link, for the reconnect counter
	advertised map[string]string     // advertised address by peer id
	book       map[string]*addrEntry // known addresses by normalized host:port
	resolved   []map[string]bool     // addresses of each Peers entry from its last lookup
	emptyNames map[int]bool          // Peers entries whose last lookup found no address
	nextLinkID uint64

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and returns a Transport. It opens nothing.
func New(cfg Config) (*Transport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	entries, err := parsePeers(cfg.Peers)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:            cfg,
		log:            cfg.Logger.With("component", "mesh"),
		metrics:        cfg.Metrics,
		secret:         []byte(cfg.Secret),
		entries:        entries,
		rejects:        logLimiter{last: make(map[string]time.Time)},
		linkIdle:       max(2*cfg.PeerTimeout, 3*cfg.HeartbeatInterval),
		ctx:            ctx,
		cancel:         cancel,
		handshakeSlots: make(chan struct{}, maxPendingHandshakes),
		wakeDial:       make(chan struct{}, 1),
		bookChanged:    make(chan struct{}, 1),
		selfAddrs:      make(map[string]bool),
		conns:          make(map[net.Conn]struct{}),
		links:          make(map[string]*link),
		pending:        make(map[string]*link),
		lastLink:       make(map[string]*link),
		everLinked:     make(map[string]bool),
		advertised:     make(map[string]string),
		book:           make(map[string]*addrEntry),
		resolved:       make([]map[string]bool, len(entries)),
	}
	return t, nil
}

// setDefaults rejects invalid fields and fills the zero ones.
func (c *Config) setDefaults() error {
	if err := c.validate(); err != nil {
		return err
	}
	if err := c.setDurationDefaults(); err != nil {
		return err
	}
	if c.MaxFrameBytes < 0 || c.OutboundQueue < 0 {
		return fmt.Errorf("%w: max frame bytes %d and outbound queue %d must not be negative", ErrInvalidConfig, c.MaxFrameBytes, c.OutboundQueue)
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.OutboundQueue == 0 {
		c.OutboundQueue = DefaultOutboundQueue
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.LookupHost == nil {
		c.LookupHost = net.DefaultResolver.LookupHost
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// validate checks the fields that have no default.
func (c *Config) validate() error {
	if !validNodeID(c.NodeID) {
		return fmt.Errorf("%w: node id %q: want 1-64 of [A-Za-z0-9._-]", ErrInvalidConfig, c.NodeID)
	}
	if c.Incarnation == 0 {
		return fmt.Errorf("%w: incarnation is missing: draw a random non-zero number at each start", ErrInvalidConfig)
	}
	if c.Metrics == nil {
		return fmt.Errorf("%w: metrics are missing", ErrInvalidConfig)
	}
	if c.AdvertiseAddr != "" && !validAddr(c.AdvertiseAddr) {
		return fmt.Errorf("%w: advertise address %q: want host:port with a port of 1-65535", ErrInvalidConfig, c.AdvertiseAddr)
	}
	return nil
}

// setDurationDefaults fills the zero durations. Negative ones are
// mistakes, not requests for the default.
func (c *Config) setDurationDefaults() error {
	durations := []struct {
		name  string
		value *time.Duration
		def   time.Duration
	}{
		{"heartbeat interval", &c.HeartbeatInterval, DefaultHeartbeatInterval},
		{"peer timeout", &c.PeerTimeout, DefaultPeerTimeout},
		{"resolve interval", &c.ResolveInterval, DefaultResolveInterval},
		{"handshake timeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
		{"forget after", &c.ForgetAfter, 0},
	}
	for _, d := range durations {
		if *d.value < 0 {
			return fmt.Errorf("%w: %s %s is negative", ErrInvalidConfig, d.name, *d.value)
		}
		if *d.value == 0 {
			*d.value = d.def
		}
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = 10 * c.PeerTimeout
	}
	return nil
}

// Start opens the listener and starts accepting and dialing. It sends the
// transport's events on events until Close. The receiver must keep reading
// events: a link whose events are not read stops reading from its peer.
func (t *Transport) Start(events chan<- Event) error {
	if events == nil {
		return fmt.Errorf("%w: events channel is nil", ErrInvalidConfig)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if t.started {
		t.mu.Unlock()
		return ErrStarted
	}
	t.started = true
	t.mu.Unlock()

	// Listen outside the lock, because it may take a while.
	var lc net.ListenConfig
	ln, err := lc.Listen(t.ctx, "tcp", t.cfg.ListenAddr)
	if err != nil {
		t.mu.Lock()
		t.started = false
		t.mu.Unlock()
		return fmt.Errorf("mesh: listen on %s: %w", t.cfg.ListenAddr, err)
	}
	if err := t.run(ln, events); err != nil {
		_ = ln.Close()
		return err
	}

	if t.cfg.Secret == "" {
		t.log.Warn("cluster secret is empty: any node that can connect to the cluster listener may join, so set --cluster-secret")
	}
	t.log.Info("mesh transport started", "listen", ln.Addr().String(), "advertise", t.advertise,
		"peers", len(t.entries), "peer_exchange", t.cfg.PeerExchange, "tls", t.cfg.TLS != nil)
	return nil
}

// run records the listener and starts the goroutines, unless Close came
// first. Holding the lock while adding to the WaitGroup makes Close wait
// for every goroutine started here.
func (t *Transport) run(ln net.Listener, events chan<- Event) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.ln = ln
	t.events = events
	t.advertise = advertiseAddr(t.cfg.AdvertiseAddr, ln.Addr())
	t.selfAddrs[normalizeAddr(t.advertise)] = true
	t.selfAddrs[normalizeAddr(ln.Addr().String())] = true
	t.addLiteralPeersLocked()

	t.wg.Add(2)
	go t.acceptLoop()
	go t.dialLoop()
	if t.hasDNSPeers() {
		t.wg.Add(1)
		go t.resolveLoop()
	}
	if t.cfg.PeerExchange {
		t.wg.Add(1)
		go t.exchangeLoop()
	}
	return nil
}

// Addr returns the listener's address, or nil before Start.
func (t *Transport) Addr() net.Addr {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Send queues env for the peer with node id peer. It never blocks. It
// returns false when no link to peer is up. When the link's queue is full,
// Send closes the link, and an EventLinkDown follows. The caller must not
// modify env afterwards, because a writer encodes it later.
//
// Send uses the peer's newest link from just before its EventLinkUp is
// sent. With a buffered events channel, an envelope sent before the
// receiver read that EventLinkUp may already go out on the new link.
func (t *Transport) Send(peer string, env *wire.Envelope) bool {
	t.mu.RLock()
	l := t.links[peer]
	closed := t.closed
	t.mu.RUnlock()
	if l == nil || closed || !l.up.Load() {
		return false
	}
	return l.enqueue(env)
}

// Peers returns every known peer, configured, learned or connected, sorted
// by address, and an empty slice, not nil, when there is none. A node
// reached at several addresses appears once.
func (t *Transport) Peers() []PeerStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()

	// Group the addresses by the node last met there.
	nodeAddr := make(map[string]string)
	out := []PeerStatus{}
	for _, e := range t.book {
		switch {
		case e.self:
		case e.node == "":
			out = append(out, PeerStatus{Addr: e.addr})
		case nodeAddr[e.node] == "" || e.addr < nodeAddr[e.node]:
			nodeAddr[e.node] = e.addr
		}
	}
	for id := range t.links {
		if _, ok := nodeAddr[id]; !ok {
			nodeAddr[id] = ""
		}
	}

	// Prefer the address the node advertises over the ones it was met at.
	for id, addr := range nodeAddr {
		if adv := t.advertised[id]; adv != "" {
			addr = adv
		}
		out = append(out, PeerStatus{ID: id, Addr: addr, Connected: t.links[id] != nil})
	}
	slices.SortFunc(out, func(a, b PeerStatus) int {
		if c := strings.Compare(a.Addr, b.Addr); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// KnownAddrCount returns the number of configured and learned addresses,
// excluding those of this node.
func (t *Transport) KnownAddrCount() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	count := 0
	for _, e := range t.book {
		if !e.self {
			count++
		}
	}
	return count
}

// Close closes the listener and every link and waits for the transport's
// goroutines to end. It first gives each link up to closeFlushTimeout to
// write what is queued, so that an envelope sent just before Close (such
// as a leave) is not lost. No events are sent after Close returns. Calling
// Close again returns the first call's result.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		ln := t.ln
		links := make([]*link, 0, len(t.links))
		for _, l := range t.links {
			links = append(links, l)
		}
		t.mu.Unlock()

		// Stop new connections first, then flush, then cut everything.
		if ln != nil {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				t.closeErr = fmt.Errorf("mesh: close listener: %w", err)
			}
		}
		flushLinks(links, closeFlushTimeout)
		t.cancel()
		t.closeConns()
		t.wg.Wait()
		t.log.Info("mesh transport closed")
	})
	return t.closeErr
}

// closeConns closes every open connection, in a handshake or linked.
func (t *Transport) closeConns() {
	t.mu.Lock()
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	links := make([]*link, 0, len(t.links)+len(t.lastLink))
	for _, l := range t.links {
		links = append(links, l)
	}
	for _, l := range t.lastLink {
		links = append(links, l)
	}
	t.mu.Unlock()

	for _, l := range links {
		l.close(ErrClosed)
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// trackConn records an open connection so that Close can close it. It
// returns false, having closed conn, when the transport is closed.
func (t *Transport) trackConn(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = conn.Close()
		return false
	}
	t.conns[conn] = struct{}{}
	return true
}

// untrackConn closes conn and stops tracking it.
func (t *Transport) untrackConn(conn net.Conn) {
	_ = conn.Close()
	t.mu.Lock()
	delete(t.conns, conn)
	t.mu.Unlock()
}

// emit sends ev to the receiver. It returns false when Close came first.
func (t *Transport) emit(ev Event) bool {
	if t.ctx.Err() != nil {
		return false
	}
	select {
	case t.events <- ev:
		return true
	case <-t.ctx.Done():
		return false
	}
}

// signal wakes a loop waiting on ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// advertiseAddr returns the configured address, or one derived from the
// listener's. An address on every interface is useless to peers, so the
// host name takes its place, as --cluster-advertise documents.
func advertiseAddr(configured string, listen net.Addr) string {
	if configured != "" {
		return configured
	}
	tcp, ok := listen.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return listen.String()
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return listen.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
