package mesh

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// Connection limits and delays.
const (
	// maxPendingHandshakes bounds concurrent inbound handshakes. More
	// connections are closed at once.
	maxPendingHandshakes = 64
	// reconnectBaseDelay is the first step of the redial backoff.
	reconnectBaseDelay = 50 * time.Millisecond
	// maxAcceptDelay caps the pause after a failed Accept.
	maxAcceptDelay = time.Second
)

// acceptLoop accepts inbound connections until the listener closes.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}

			// Errors such as running out of file descriptors pass, so
			// retry after a growing pause, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
			t.log.Error("accepting a peer connection failed, retrying", "error", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0

		select {
		case t.handshakeSlots <- struct{}{}:
		default:
			t.log.Warn("closing peer connection: too many handshakes in progress", "remote", conn.RemoteAddr().String(), "max", maxPendingHandshakes)
			_ = conn.Close()
			continue
		}
		if !t.trackConn(conn) {
			<-t.handshakeSlots
			return
		}
		t.wg.Add(1)
		go t.serveInbound(conn)
	}
}

// serveInbound runs the handshake of an inbound connection and then the
// link.
func (t *Transport) serveInbound(conn net.Conn) {
	defer t.wg.Done()
	defer t.untrackConn(conn)
	l, _, err := t.establish(conn, roleAcceptor, "", "")
	<-t.handshakeSlots
	if err != nil {
		return
	}
	l.run()
}

// dialLoop starts a dial for every due address and forgets stale ones. It
// wakes when the book changes, when the next dial is due, and at least
// every heartbeat interval.
func (t *Transport) dialLoop() {
	defer t.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.wakeDial:
		case <-timer.C:
		}
		next := t.startDueDials(time.Now())
		timer.Reset(time.Until(next))
	}
}

// startDueDials starts the due dials and returns when the next one is due.
func (t *Transport) startDueDials(now time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return now.Add(t.cfg.HeartbeatInterval)
	}
	if t.forgetLocked(now) {
		signal(t.bookChanged)
	}

	next := now.Add(t.cfg.HeartbeatInterval)
	for _, e := range t.book {
		if !t.shouldDialLocked(e) {
			continue
		}
		if e.nextDial.After(now) {
			next = minTime(next, e.nextDial)
			continue
		}
		e.dialing = true
		t.wg.Add(1)
		go t.dial(e.addr, e.serverName)
	}
	return next
}

// shouldDialLocked reports whether e is an address to dial: configured, or
// learned with peer exchange on, and not of a node already linked.
func (t *Transport) shouldDialLocked(e *addrEntry) bool {
	if e.self || e.dialing {
		return false
	}
	if !e.configured() && !(e.learned && t.cfg.PeerExchange) {
		return false
	}
	return e.node == "" || (t.links[e.node] == nil && t.pending[e.node] == nil)
}

// dial connects to addr and runs the link that results.
func (t *Transport) dial(addr, serverName string) {
	defer t.wg.Done()
	conn, err := t.dialConn(addr)
	if err != nil {
		if failures := t.finishDial(addr, "", err); failures == 1 {
			t.log.Warn("dialing peer failed, retrying with backoff", "addr", addr, "error", err)
		} else {
			t.log.Debug("dialing peer failed", "addr", addr, "error", err, "failures", failures)
		}
		return
	}
	if !t.trackConn(conn) {
		t.finishDial(addr, "", ErrClosed)
		return
	}
	defer t.untrackConn(conn)

	l, peer, err := t.establish(conn, roleDialer, addr, serverName)
	t.finishDial(addr, peer, err)
	if err != nil {
		return
	}
	l.run()
}

// dialConn opens a TCP connection to addr. A host name is resolved with
// LookupHost, and its addresses are tried in order.
func (t *Transport) dialConn(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	var d net.Dialer
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if net.ParseIP(host) != nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	ips, err := t.cfg.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: look up host: %w", addr, err)
	}
	err = fmt.Errorf("dial %s: host %s has no addresses", addr, host)
	for _, ip := range ips {
		conn, dialErr := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
		if dialErr == nil {
			return conn, nil
		}
		err = dialErr
	}
	return nil, err
}

// finishDial records the outcome of a dial of addr. peer is the node met
// there, if the hellos got through. It returns the number of failed dials
// in a row, 0 after a link.
func (t *Transport) finishDial(addr, peer string, err error) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.book[addr]
	if e == nil {
		return 0
	}
	e.dialing = false
	if peer != "" {
		e.node = peer
	}
	now := time.Now()
	switch {
	case err == nil:
		e.attempts = 0
		return 0
	case errors.Is(err, errSelf):
		e.self = true
		signal(t.bookChanged)
		t.log.Info("peer address leads to this node, not dialing it again", "addr", addr)
		return 0
	}

	// A lost race of two dials is retried too: the link it lost to may
	// already be gone.
	e.attempts++
	e.nextDial = now.Add(t.backoff(e.attempts))
	if e.downSince.IsZero() && (peer == "" || t.links[peer] == nil) {
		e.downSince = now
	}
	return e.attempts
}

// backoff returns the delay before redial number attempt+1: a random
// duration up to reconnectBaseDelay doubled per attempt, capped at
// HeartbeatInterval ("full jitter", so nodes that lost a link together do
// not redial together).
func (t *Transport) backoff(attempt int) time.Duration {
	ceiling := t.cfg.HeartbeatInterval
	if attempt < 16 {
		ceiling = min(ceiling, reconnectBaseDelay<<attempt)
	}
	return rand.N(ceiling + 1)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
