package mesh

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wscluster/wscluster/cluster/wire"
)

// Link errors.
var (
	errOversized     = errors.New("frame larger than the max frame bytes")
	errOriginChanged = errors.New("envelope origin or incarnation differs from the handshake")
	errQueueOverflow = errors.New("outbound queue full")
	errReplaced      = errors.New("replaced by a newer link")
	errTooLarge      = errors.New("envelope larger than the max frame bytes")
)

// Sizes of a link's buffers.
const (
	frameHeaderSize = 4
	readBufferSize  = 64 << 10
	// maxBatchBytes ends a batch early, so a full queue of large envelopes
	// does not become one huge buffer.
	maxBatchBytes = 1 << 20
	// maxRetainedBuffer is the largest write buffer kept for reuse.
	maxRetainedBuffer = 4 << 20
	// kindSlots covers the envelope kinds, which are small numbers.
	kindSlots = 16
)

// link is one live connection to a peer. Its reader, run, sends the
// link's events. Its writer, writeLoop, writes what Send queued.
type link struct {
	t      *Transport
	raw    net.Conn // closed to end the link, because a TLS Close could block on a write
	conn   net.Conn // raw or its TLS client or server, for reads and writes
	peer   string
	inc    uint64
	addr   string // the peer's advertised address
	remote string // the connection's remote address
	dialed string // the address dialed, empty for an inbound link
	log    *slog.Logger

	// id and prev are set by commit before run starts. prev is the peer's
	// previous link, whose LinkDown must precede this link's LinkUp.
	id   uint64
	prev *link

	lastRead atomic.Int64 // unix nanoseconds of the last frame read
	up       atomic.Bool  // Send may use the link

	mu       sync.Mutex
	queue    []*wire.Envelope
	closed   bool
	cause    error // the error that closed the link
	draining bool

	notify    chan struct{} // wakes the writer
	done      chan struct{} // closed by close
	flushed   chan struct{} // closed by the writer when draining and idle
	downSent  chan struct{} // closed when run has ended, after the LinkDown
	closeOnce sync.Once
	flushOnce sync.Once

	// Counters by envelope kind, filled lazily. The writer uses sent and
	// the reader received, so neither needs a lock.
	sent     [kindSlots]prometheus.Counter
	received [kindSlots]prometheus.Counter
}

// newLink returns a link for an authenticated connection to peer.
func (t *Transport) newLink(raw, conn net.Conn, peer *hello, dialed string) *link {
	l := &link{
		t:        t,
		raw:      raw,
		conn:     conn,
		peer:     peer.nodeID,
		inc:      peer.incarnation,
		addr:     peer.addr,
		remote:   raw.RemoteAddr().String(),
		dialed:   dialed,
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		flushed:  make(chan struct{}),
		downSent: make(chan struct{}),
	}
	l.log = t.log.With("peer", l.peer, "incarnation", l.inc, "remote", l.remote)
	l.lastRead.Store(time.Now().UnixNano())
	return l
}

func (l *link) lastReadTime() time.Time {
	return time.Unix(0, l.lastRead.Load())
}

// close ends the link for cause. Only the first cause is kept. It returns
// true for the call that closed the link.
func (l *link) close(cause error) bool {
	first := false
	l.closeOnce.Do(func() {
		first = true
		l.mu.Lock()
		l.closed = true
		l.cause = cause
		l.queue = nil
		l.mu.Unlock()
		close(l.done)
		_ = l.raw.Close()
	})
	return first
}

func (l *link) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *link) closeCause() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

// enqueue queues env for the writer. A full queue closes the link, because
// the peer is not keeping up, and the core replays what it missed after the
// reconnect.
func (l *link) enqueue(env *wire.Envelope) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	if len(l.queue) >= l.t.cfg.OutboundQueue {
		l.mu.Unlock()
		if l.close(errQueueOverflow) {
			l.t.metrics.PeerQueueOverflows.WithLabelValues(l.peer).Inc()
			l.log.Warn("closing link: outbound queue full", "queue", l.t.cfg.OutboundQueue)
		}
		return false
	}
	l.queue = append(l.queue, env)
	l.mu.Unlock()
	signal(l.notify)
	return true
}

// run sends the link's events and reads its frames until the link ends.
func (l *link) run() {
	t := l.t

	// The previous link of this peer must be reported down first.
	if l.prev != nil {
		select {
		case <-l.prev.downSent:
		case <-t.ctx.Done():
		}
	}

	// Send may use the link from now on. It is marked up before the
	// LinkUp is sent, so a receiver that sends at once from its LinkUp
	// handling finds it up. A link closed while it waited is not reported.
	l.up.Store(true)
	reported := !l.isClosed() && t.emit(Event{Kind: EventLinkUp, Peer: l.peer, Link: l.id, Incarnation: l.inc, Addr: l.addr})
	err := ErrClosed
	if reported {
		l.log.Info("link up", "link", l.id, "addr", l.addr)
		if t.cfg.PeerExchange {
			l.enqueue(t.peersEnvelope())
		}
		err = l.readLoop()
	}
	l.up.Store(false)
	l.close(err)
	t.unregister(l)
	l.logDown()
	if reported {
		t.emit(Event{Kind: EventLinkDown, Peer: l.peer, Link: l.id, Incarnation: l.inc, Addr: l.addr})
	}

	// Only now may the peer's next link send its LinkUp.
	close(l.downSent)
	t.dropLastLink(l)
}

// logDown logs why the link ended and counts a rejected peer.
func (l *link) logDown() {
	cause := l.closeCause()
	reason := linkRejectReason(cause)
	if reason != "" {
		l.t.metrics.PeerLinkRejects.WithLabelValues(reason).Inc()
		l.t.logReject(l.log, reason, "link dropped: bad input from peer", cause)
		return
	}
	if l.t.ctx.Err() != nil {
		l.log.Debug("link closed", "link", l.id, "cause", cause)
		return
	}
	l.log.Info("link down", "link", l.id, "cause", cause)
}

// linkRejectReason returns the reject reason for a link that ended with
// err, or "" when the link just closed.
func linkRejectReason(err error) string {
	switch {
	case errors.Is(err, errOversized):
		return reasonOversized
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, errOriginChanged):
		return reasonMalformed
	}
	return ""
}

// readLoop reads frames and sends their envelopes as events. Peer lists
// are consumed here and never sent.
func (l *link) readLoop() error {
	t := l.t
	r := bufio.NewReaderSize(l.conn, readBufferSize)
	var buf []byte
	var deadlineSet time.Time
	for {
		// A link silent for linkIdle is dead: the peer sends keepalives.
		// The deadline moves at most every quarter of it, because setting
		// it costs more than a read from the buffer.
		if now := time.Now(); now.Sub(deadlineSet) > t.linkIdle/4 {
			_ = l.conn.SetReadDeadline(now.Add(t.linkIdle))
			deadlineSet = now
		}
		payload, err := readFrame(r, &buf, t.cfg.MaxFrameBytes)
		if err != nil {
			return err
		}
		l.lastRead.Store(time.Now().UnixNano())
		if len(payload) == 0 {
			continue
		}

		env, err := l.decode(payload)
		if err != nil {
			return err
		}
		if env.Kind == wire.KindPeers {
			if t.cfg.PeerExchange {
				t.learn(env.Peers, l.log)
			}
			continue
		}
		if !t.emit(Event{Kind: EventEnvelope, Peer: l.peer, Link: l.id, Envelope: env}) {
			return ErrClosed
		}
	}
}

// decode decodes one envelope, checks that it comes from the handshake's
// node and incarnation, and counts it.
func (l *link) decode(payload []byte) (*wire.Envelope, error) {
	env, err := wire.Decode(payload)
	if err != nil {
		return nil, err
	}
	if env.Origin != l.peer || env.Incarnation != l.inc {
		return nil, fmt.Errorf("%w: origin %q incarnation %d", errOriginChanged, env.Origin, env.Incarnation)
	}
	l.counter(&l.received, l.t.metrics.PeerEnvelopesReceived, env.Kind).Inc()
	return env, nil
}

// readFrame reads one frame into *buf, growing it as needed, and returns
// its payload, which is valid until the next call. An empty payload is a
// keepalive.
func readFrame(r io.Reader, buf *[]byte, maxBytes int) ([]byte, error) {
	var header [frameHeaderSize]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(header[:])
	if uint64(n) > uint64(maxBytes) {
		return nil, fmt.Errorf("%w: %d bytes, max %d", errOversized, n, maxBytes)
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	payload := (*buf)[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	return payload, nil
}

// counter returns the counter of kind in slots, creating it on first use.
func (l *link) counter(slots *[kindSlots]prometheus.Counter, vec *prometheus.CounterVec, kind wire.Kind) prometheus.Counter {
	i := int(kind)
	if i >= kindSlots {
		return vec.WithLabelValues(l.peer, kind.String())
	}
	if slots[i] == nil {
		slots[i] = vec.WithLabelValues(l.peer, kind.String())
	}
	return slots[i]
}
