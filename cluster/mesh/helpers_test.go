package mesh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
	"github.com/wscluster/wscluster/metrics"
)

// waitTimeout bounds every wait of the tests.
const waitTimeout = 10 * time.Second

// testHeartbeat is the heartbeat interval of the test nodes, short so that
// reconnects are quick.
const testHeartbeat = 100 * time.Millisecond

// testNode is a started Transport whose events a goroutine records.
type testNode struct {
	id      string
	inc     uint64
	tr      *Transport
	metrics *metrics.Metrics

	mu      sync.Mutex
	events  []Event
	changed chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// testLogWriter sends log lines to t.Log, shown when a test fails.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig returns a config for a node on a free loopback port.
func testConfig(t testing.TB, id string) Config {
	return Config{
		NodeID:            id,
		Incarnation:       rand.Uint64() | 1,
		ListenAddr:        "127.0.0.1:0",
		PeerExchange:      true,
		Secret:            "test secret",
		HeartbeatInterval: testHeartbeat,
		PeerTimeout:       time.Second,
		HandshakeTimeout:  2 * time.Second,
		ResolveInterval:   50 * time.Millisecond,
		Logger:            testLogger(t).With("test_node", id),
		Metrics:           metrics.New(),
	}
}

// startNode starts a node with testConfig changed by mutate. Close runs at
// the end of the test.
func startNode(t *testing.T, id string, mutate func(*Config)) *testNode {
	t.Helper()
	cfg := testConfig(t, id)
	if mutate != nil {
		mutate(&cfg)
	}
	tr, err := New(cfg)
	require.NoError(t, err)
	return startTransport(t, tr)
}

// startTransport starts tr and records its events until the test ends.
func startTransport(t *testing.T, tr *Transport) *testNode {
	t.Helper()
	n := &testNode{
		id:      tr.cfg.NodeID,
		inc:     tr.cfg.Incarnation,
		tr:      tr,
		metrics: tr.cfg.Metrics,
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	events := make(chan Event)
	go n.record(events)
	require.NoError(t, tr.Start(events))
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		close(n.stop)
		<-n.done
	})
	return n
}

func (n *testNode) record(events <-chan Event) {
	defer close(n.done)
	for {
		select {
		case ev := <-events:
			n.mu.Lock()
			n.events = append(n.events, ev)
			n.mu.Unlock()
			signal(n.changed)
		case <-n.stop:
			return
		}
	}
}

func (n *testNode) addr() string { return n.tr.Addr().String() }

// snapshot returns a copy of the events so far.
func (n *testNode) snapshot() []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Event(nil), n.events...)
}

// waitFor waits until cond holds for the events so far, and fails the
// test after waitTimeout.
func (n *testNode) waitFor(t *testing.T, what string, cond func([]Event) bool) []Event {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		if events := n.snapshot(); cond(events) {
			return events
		}
		select {
		case <-n.changed:
		case <-deadline.C:
			t.Fatalf("node %s: timed out after %s waiting for %s; events: %v", n.id, waitTimeout, what, describe(n.snapshot()))
		}
	}
}

// waitLinkUps waits until the node has count LinkUps from peer.
func (n *testNode) waitLinkUps(t *testing.T, peer string, count int) []Event {
	t.Helper()
	return n.waitFor(t, "link up from "+peer, func(events []Event) bool {
		return countEvents(events, EventLinkUp, peer) >= count
	})
}

// send queues a publish with seq to peer, failing the test if no link is up.
func (n *testNode) send(t *testing.T, peer string, seq uint64) {
	t.Helper()
	require.True(t, n.tr.Send(peer, publish(n, seq)), "send from %s to %s", n.id, peer)
}

func publish(n *testNode, seq uint64) *wire.Envelope {
	return &wire.Envelope{
		Kind: wire.KindPublish, Origin: n.id, Incarnation: n.inc, Seq: seq,
		Message: backplane.Message{ID: "m", Channel: "c", Data: []byte(`{"n":1}`)},
	}
}

func countEvents(events []Event, kind EventKind, peer string) int {
	count := 0
	for _, ev := range events {
		if ev.Kind == kind && ev.Peer == peer {
			count++
		}
	}
	return count
}

// envelopesFrom returns the envelope events of peer.
func envelopesFrom(events []Event, peer string) []*wire.Envelope {
	var out []*wire.Envelope
	for _, ev := range events {
		if ev.Kind == EventEnvelope && ev.Peer == peer {
			out = append(out, ev.Envelope)
		}
	}
	return out
}

func describe(events []Event) []string {
	out := make([]string, 0, len(events))
	for _, ev := range events {
		s := ev.Kind.String() + ":" + ev.Peer
		if ev.Envelope != nil {
			s += ":" + ev.Envelope.Kind.String()
		}
		out = append(out, s)
	}
	return out
}

// counterValue returns the value of a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func (n *testNode) rejects(t testing.TB, reason string) float64 {
	return counterValue(t, n.metrics.PeerLinkRejects.WithLabelValues(reason))
}

// waitRejects waits until the node counted a rejected link for reason.
func (n *testNode) waitRejects(t *testing.T, reason string) {
	t.Helper()
	require.Eventually(t, func() bool { return n.rejects(t, reason) >= 1 }, waitTimeout, 5*time.Millisecond,
		"node %s counted no %s reject", n.id, reason)
}

// settle waits a few heartbeat intervals, for checks that something does
// not happen: there is no event to wait for.
func settle() { time.Sleep(5 * testHeartbeat) }

// proxy forwards TCP connections to a target that may be set after it
// starts. It can cut or freeze its connections and records the bytes the
// first client sent.
type proxy struct {
	ln       net.Listener
	target   chan string // holds the target once set
	accepted atomic.Int32
	frozen   atomic.Bool
	refusing atomic.Bool // close new connections at once

	mu       sync.Mutex
	conns    []net.Conn
	recorded bytes.Buffer
	closed   chan struct{}
	wg       sync.WaitGroup
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: make(chan string, 1), closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// setTarget sets where connections go; connections accepted before wait.
func (p *proxy) setTarget(addr string) { p.target <- addr }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := p.accepted.Add(1)
		p.track(client)
		p.wg.Add(1)
		go p.serve(client, n == 1)
	}
}

func (p *proxy) serve(client net.Conn, record bool) {
	defer p.wg.Done()
	if p.refusing.Load() {
		_ = client.Close()
		return
	}
	var target string
	select {
	case target = <-p.target:
		p.target <- target
	case <-p.closed:
		return
	}
	server, err := net.Dial("tcp", target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.track(server)
	p.wg.Add(2)
	go p.pipe(server, client, record)
	go p.pipe(client, server, false)
}

// pipe copies src to dst until either fails, or stops copying for good
// once the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn, record bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.frozen.Load() {
			<-p.closed
			return
		}
		if n > 0 {
			if record {
				p.mu.Lock()
				p.recorded.Write(buf[:n])
				p.mu.Unlock()
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

func (p *proxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		_ = c.Close()
	default:
		p.conns = append(p.conns, c)
	}
}

// kill closes every connection the proxy holds, as a network fault would.
func (p *proxy) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) recordedBytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.recorded.Bytes())
}

func (p *proxy) close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	p.mu.Unlock()
	_ = p.ln.Close()
	p.kill()
	p.wg.Wait()
}

// rawPeer completes a handshake with the node at addr as node id, so a
// test can then write frames of its own.
func rawPeer(t *testing.T, addr, id string, inc uint64, secret string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitTimeout)))
	h, err := newHandshake(conn, roleDialer, []byte(secret), id, inc, "127.0.0.1:1")
	require.NoError(t, err)
	require.NoError(t, h.authenticate())
	v, err := h.exchangeVerdicts(verdictAccept)
	require.NoError(t, err)
	require.Equal(t, verdictAccept, v)
	require.NoError(t, conn.SetDeadline(time.Time{}))
	return conn
}

// writeFrame writes one frame with payload.
func writeFrame(t *testing.T, conn net.Conn, payload []byte) {
	t.Helper()
	frame := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	frame[0] = byte(len(payload) >> 24)
	frame[1] = byte(len(payload) >> 16)
	frame[2] = byte(len(payload) >> 8)
	frame[3] = byte(len(payload))
	_, err := conn.Write(append(frame, payload...))
	require.NoError(t, err)
}

// readUntilClosed reads conn until the other side closes it, failing the
// test if that takes longer than waitTimeout.
func readUntilClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	_, err := io.Copy(io.Discard, conn)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("connection still open after %s", waitTimeout)
	}
}

// fakeDNS is a resolver for LookupHost; there is no DNS server in tests.
type fakeDNS struct {
	mu    sync.Mutex
	hosts map[string][]string
}

func (f *fakeDNS) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hosts == nil {
		f.hosts = make(map[string][]string)
	}
	if addrs == nil {
		delete(f.hosts, host)
		return
	}
	f.hosts[host] = addrs
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	addrs, ok := f.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return append([]string(nil), addrs...), nil
}
