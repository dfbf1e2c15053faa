// Package faultproxy is an in-process TCP proxy that injects network faults
// for tests: a cut link, a silent partition (blackhole), latency with jitter
// and connection resets.
//
// A Proxy listens on one address and forwards every accepted connection to
// one target, carrying both directions of each connection. Put one proxy in
// front of the listener of each link that a test wants to break, point the
// dialing side at Proxy.Addr, and switch faults on and off while traffic
// flows:
//
//	p, err := faultproxy.New("127.0.0.1:0", targetAddr)
//	if err != nil {
//		return err
//	}
//	defer p.Close()
//	dialer.Dial("tcp", p.Addr())
//	p.Blackhole() // a partition that TCP has not noticed
//	p.Heal()      // bytes flow again
//
// Every method is safe for concurrent use. The zero value is not usable:
// create a Proxy with New.
package faultproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// DialTimeout bounds each dial of the target.
const DialTimeout = 5 * time.Second

// mode is the fault state of a Proxy.
type mode uint8

const (
	// modeForward forwards bytes in both directions.
	modeForward mode = iota
	// modeCut closes every accepted connection at once.
	modeCut
	// modeBlackhole accepts connections but forwards nothing.
	modeBlackhole
)

// Proxy forwards TCP connections from its listener to a target address and
// injects faults on command.
type Proxy struct {
	target string
	ln     net.Listener
	log    *slog.Logger
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    mode
	open    chan struct{} // closed while bytes may flow, replaced by Blackhole
	latency time.Duration
	jitter  time.Duration
	conns   map[*pair]struct{}
	closed  bool
}

// New listens on listenAddr, such as "127.0.0.1:0", and forwards every
// accepted connection to target. The proxy starts in forwarding mode.
func New(listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", listenAddr, err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{
		target: target,
		ln:     ln,
		log:    slog.Default().With("component", "faultproxy", "listen", ln.Addr().String(), "target", target),
		open:   open,
		conns:  make(map[*pair]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the proxy listens on, as host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address every connection is forwarded to.
func (p *Proxy) Target() string { return p.target }

// ConnCount returns the number of client connections the proxy holds open,
// forwarding or not.
func (p *Proxy) ConnCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Cut drops every open connection with a TCP reset and, until Heal, closes
// each new connection as soon as it is accepted. Dialers see a connection
// that ends at once, or a connect that fails with a reset, as with a crashed
// peer or a firewall that rejects.
func (p *Proxy) Cut() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.mode = modeCut
	conns := p.takeConnsLocked()
	p.mu.Unlock()

	for _, c := range conns {
		c.reset()
	}
}

// Blackhole stops forwarding bytes in both directions but keeps every
// connection open, like a partition that TCP has not noticed yet. New
// connections are accepted and held, and the target is dialed for them only
// after Heal. Bytes read before the call may still arrive. Bytes sent during
// the blackhole are held, by the proxy and by the kernel's socket buffers,
// and delivered after Heal, as TCP retransmission would, unless an endpoint
// gave up on the connection first.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.mode = modeBlackhole
	if p.flowingLocked() {
		p.open = make(chan struct{})
	}
}

// Heal ends Cut and Blackhole: held bytes and connections flow again, and
// new connections are forwarded.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if !p.flowingLocked() {
		close(p.open)
	}
	p.mode = modeForward
}

// flowingLocked reports whether bytes may flow, that is whether open is
// closed. Cut leaves open as it is, so Heal after Blackhole and Cut still
// finds it unclosed.
func (p *Proxy) flowingLocked() bool {
	select {
	case <-p.open:
		return true
	default:
		return false
	}
}

// SetLatency delays each chunk of bytes forwarded, in either direction, by
// delay plus a uniformly random offset in [-jitter, +jitter], never less
// than zero. Chunks of one direction keep their order, as TCP keeps bytes
// in order: a chunk never leaves before the one read before it. It applies
// to chunks read from then on. SetLatency(0, 0) turns latency off.
func (p *Proxy) SetLatency(delay, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = max(delay, 0)
	p.jitter = max(jitter, 0)
}

// State is a snapshot of the faults a Proxy injects.
type State struct {
	// Cut is true from Cut until Heal or Blackhole.
	Cut bool
	// Blackholed is true from Blackhole until Heal or Cut.
	Blackholed bool
	// Latency and Jitter are the values of the last SetLatency.
	Latency time.Duration
	Jitter  time.Duration
}

// Faulty reports whether the proxy injects any fault: a cut, a blackhole
// or latency.
func (s State) Faulty() bool {
	return s.Cut || s.Blackholed || s.Latency > 0 || s.Jitter > 0
}

// State returns the faults the proxy injects now, so that a caller can
// verify that Heal and SetLatency(0, 0) left nothing behind.
func (p *Proxy) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return State{
		Cut:        p.mode == modeCut,
		Blackholed: p.mode == modeBlackhole,
		Latency:    p.latency,
		Jitter:     p.jitter,
	}
}

// ResetAll closes every open connection once with a TCP reset. New
// connections are still accepted and handled by the current mode.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	conns := p.takeConnsLocked()
	p.mu.Unlock()

	for _, c := range conns {
		c.reset()
	}
}

// Close stops the listener, closes every connection and waits for the
// proxy's goroutines to end. It is safe to call twice, and later calls
// return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := p.takeConnsLocked()
	p.mu.Unlock()

	err := p.ln.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("faultproxy: close listener %s: %w", p.Addr(), err)
	}
	return nil
}

// takeConnsLocked removes every connection from the proxy's set and returns
// them, so the caller can close them without holding the lock.
func (p *Proxy) takeConnsLocked() []*pair {
	conns := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	clear(p.conns)
	return conns
}

// acceptLoop accepts connections until Close.
func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}

			// A transient error such as running out of file
			// descriptors: pause briefly, as net/http does.
			p.log.Warn("accept failed; retrying", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.admit(conn)
	}
}

// admit handles one accepted connection according to the current mode.
func (p *Proxy) admit(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == modeCut {
		resetConn(conn)
		return
	}
	c := newPair(conn)
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	go p.serve(c)
}

// forwarding returns a channel that is closed while bytes may flow.
func (p *Proxy) forwarding() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// waitForwarding waits until bytes may flow or c ends. It returns false
// when c ended.
func (p *Proxy) waitForwarding(c *pair) bool {
	select {
	case <-p.forwarding():
		return true
	case <-c.done:
		return false
	}
}

// chunkDelay returns the latency of one chunk.
func (p *Proxy) chunkDelay() time.Duration {
	p.mu.Lock()
	delay, jitter := p.latency, p.jitter
	p.mu.Unlock()
	if jitter > 0 {
		delay += time.Duration(rand.Int64N(int64(2*jitter)+1)) - jitter
	}
	return max(delay, 0)
}

// forget removes c from the proxy's set once it has ended.
func (p *Proxy) forget(c *pair) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// resetConn closes conn so that the peer gets a TCP reset rather than an
// orderly end of stream.
func resetConn(conn net.Conn) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}
