package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Reasons of wscluster_peer_link_rejects_total.
const (
	reasonHandshake   = "handshake"
	reasonAuth        = "auth"
	reasonDuplicateID = "duplicate_id"
	reasonMalformed   = "malformed"
	reasonOversized   = "oversized"
	reasonVersion     = "version"
)

// establish runs the TLS and mesh handshakes on a new connection and
// commits the link. dialAddr is the address dialed, empty for an inbound
// connection. It returns the peer's node id once the hellos are through,
// also on failure, so that a dialer learns who is at the address.
func (t *Transport) establish(raw net.Conn, r role, dialAddr, serverName string) (*link, string, error) {
	log := t.log.With("remote", raw.RemoteAddr().String(), "role", r.String())

	// One deadline bounds both handshakes, so a silent peer cannot hold a
	// goroutine.
	_ = raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	conn, err := t.secureConn(raw, r, serverName)
	if err != nil {
		return nil, "", t.handshakeFailed(log, err)
	}
	h, err := newHandshake(conn, r, t.secret, t.cfg.NodeID, t.cfg.Incarnation, t.advertise)
	if err != nil {
		return nil, "", t.handshakeFailed(log, err)
	}
	if err := h.authenticate(); err != nil {
		return nil, peerID(h), t.handshakeFailed(log, err)
	}
	log = log.With("peer", h.peer.nodeID)

	// Both sides must accept the link. This side reserves the peer's slot
	// before it sends its verdict, so that it never accepts two links at
	// once.
	l := t.newLink(raw, conn, h.peer, dialAddr)
	reserveErr := t.reserve(l)
	remote, err := h.exchangeVerdicts(verdictFor(reserveErr))
	if err == nil && reserveErr == nil && remote != verdictAccept {
		err = fmt.Errorf("peer rejected the link: %w", remote.err())
	}
	if reserveErr != nil {
		err = reserveErr
	}
	if err != nil {
		t.release(l)
		return nil, h.peer.nodeID, t.handshakeFailed(log, err)
	}

	_ = raw.SetDeadline(time.Time{})
	if !t.commit(l) {
		return nil, h.peer.nodeID, ErrClosed
	}
	return l, h.peer.nodeID, nil
}

// peerID returns the peer's node id if its hello was read.
func peerID(h *handshake) string {
	if h.peer == nil {
		return ""
	}
	return h.peer.nodeID
}

// secureConn runs the TLS handshake when TLS is configured. A dialer
// verifies serverName unless the configuration names a server.
func (t *Transport) secureConn(raw net.Conn, r role, serverName string) (net.Conn, error) {
	if t.cfg.TLS == nil {
		return raw, nil
	}
	var conn *tls.Conn
	if r == roleAcceptor {
		conn = tls.Server(raw, t.cfg.TLS)
	} else {
		cfg := t.cfg.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = serverName
		}
		conn = tls.Client(raw, cfg)
	}
	if err := conn.HandshakeContext(t.ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errTLSHandshake, err)
	}
	return conn, nil
}

// reserve decides this side's verdict on a link whose peer proved it knows
// the secret.
//
// A second link to a peer with the same incarnation is a race of two
// dials, and the node with the smaller id decides which one lives: it
// keeps the first it reserves and rejects later ones, while the other node
// accepts and then keeps whichever link both sides accepted. A link from
// the same node id with another incarnation is a restart when the old link
// has been silent for PeerTimeout, and a duplicate node id otherwise.
func (t *Transport) reserve(l *link) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if l.peer == t.cfg.NodeID {
		if l.inc == t.cfg.Incarnation {
			return errSelf
		}
		return fmt.Errorf("%w: %q at %s has incarnation %d, this node has %d",
			errDuplicateID, l.peer, l.remote, l.inc, t.cfg.Incarnation)
	}

	decider := t.cfg.NodeID < l.peer
	if old := t.links[l.peer]; old != nil {
		silent := time.Since(old.lastReadTime()) > t.cfg.PeerTimeout
		if old.inc != l.inc && !silent {
			return fmt.Errorf("%w: %q linked from %s (incarnation %d, heard within %s) and dialing in from %s (incarnation %d)",
				errDuplicateID, l.peer, old.remote, old.inc, t.cfg.PeerTimeout, l.remote, l.inc)
		}
		if old.inc == l.inc && decider && !silent {
			return errDuplicateLink
		}
	}
	if decider {
		if t.pending[l.peer] != nil {
			return errDuplicateLink
		}
		t.pending[l.peer] = l
	}
	return nil
}

// release gives up the reservation of a link that did not go live.
func (t *Transport) release(l *link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[l.peer] == l {
		delete(t.pending, l.peer)
	}
}

// commit makes l the peer's link, replacing an older one, and starts its
// writer. It returns false when the transport is closed.
func (t *Transport) commit(l *link) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.pending[l.peer] == l {
		delete(t.pending, l.peer)
	}

	// A replaced link goes down first: run waits for its LinkDown before
	// it sends the LinkUp of l.
	if old := t.links[l.peer]; old != nil {
		old.log.Info("link replaced by a newer link of the same node", "new_remote", l.remote, "new_incarnation", l.inc)
		old.close(errReplaced)
	}
	t.nextLinkID++
	l.id = t.nextLinkID
	l.prev = t.lastLink[l.peer]
	t.links[l.peer] = l
	t.lastLink[l.peer] = l
	if t.everLinked[l.peer] {
		t.metrics.PeerReconnects.WithLabelValues(l.peer).Inc()
	}
	t.everLinked[l.peer] = true

	// The peer's addresses are reachable now. Its advertised address is
	// remembered, so that a peer that dialed in stays known.
	t.advertised[l.peer] = l.addr
	t.linkedAddrsLocked(l)

	t.wg.Add(1)
	go l.writeLoop()
	return true
}

// handshakeFailed counts and logs a failed handshake and returns err. The
// benign outcomes (a link to itself, a lost race of two dials, a closing
// peer) are logged at debug level only.
func (t *Transport) handshakeFailed(log *slog.Logger, err error) error {
	reason := handshakeRejectReason(err)
	if reason == "" || t.ctx.Err() != nil {
		log.Debug("handshake ended without a link", "cause", err)
		return err
	}
	t.metrics.PeerLinkRejects.WithLabelValues(reason).Inc()
	t.logReject(log, reason, "mesh handshake rejected", err)
	return err
}

// handshakeRejectReason returns the reject reason of a handshake error, or
// "" for an outcome that is not a rejection.
func handshakeRejectReason(err error) string {
	switch {
	case errors.Is(err, errSelf), errors.Is(err, errDuplicateLink), errors.Is(err, errPeerClosing), errors.Is(err, ErrClosed):
		return ""
	case errors.Is(err, errDuplicateID):
		return reasonDuplicateID
	case errors.Is(err, errAuth), isTLSAuthError(err):
		return reasonAuth
	case errors.Is(err, errVersion):
		return reasonVersion
	}
	return reasonHandshake
}

// isTLSAuthError reports whether err is a failed TLS authentication: a
// TLS handshake that failed while both sides spoke TLS, or an alert from
// the peer, which a TLS 1.3 client reads only after its own handshake
// succeeded. A peer that does not speak TLS, or a connection that broke
// or timed out, is a failed handshake instead.
func isTLSAuthError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	if !errors.Is(err, errTLSHandshake) {
		return false
	}
	var header tls.RecordHeaderError
	var netErr net.Error
	notTLS := errors.As(err, &header)
	broken := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &netErr) && netErr.Timeout())
	return !notTLS && !broken
}

// logReject logs a rejected link. Repeats of one reason within
// rejectLogInterval go to debug level, because a misconfigured peer
// retries every heartbeat interval.
func (t *Transport) logReject(log *slog.Logger, reason, msg string, err error) {
	ok, suppressed := t.rejects.allow(reason, time.Now())
	if !ok {
		log.Debug(msg, "reason", reason, "error", err)
		return
	}
	level := slog.LevelWarn
	if reason == reasonDuplicateID {
		level = slog.LevelError
	}
	log.Log(context.Background(), level, msg, "reason", reason, "error", err, "suppressed_since_last", suppressed)
}
