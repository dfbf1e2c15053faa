// Package wsconn runs one server-side WebSocket connection: a reader that
// validates every client frame, and a bounded send queue whose frames are
// written by a writer goroutine that exists only while there is something to
// write.
//
// Only the opening handshake goes through gorilla/websocket. The reader
// parses client frames itself. It waits for the socket to become readable
// without holding a buffer, then reads into a pooled 16 KiB buffer and
// handles every whole frame in it. An idle connection so costs its reader
// goroutine's small stack and a few structs, but no read buffer. The writer
// writes frames encoded once by the caller with writev, many frames per
// system call, first without blocking and without a deadline, and only
// when the socket buffer is full with a blocking write under
// Config.WriteTimeout. Every write contains whole frames, and only the
// writer writes, so frames never interleave.
//
// Slow-consumer policy: Send never blocks. When a connection's queue would
// exceed Config.SendQueueLength frames or Config.SendQueueBytes bytes, or a
// write stays blocked for Config.WriteTimeout, the connection's queue is
// dropped and it is closed with status 4008 "slow consumer". The server tries
// to send that close frame for Config.CloseGrace, then drops the connection.
// Other connections are never held back by a slow one. The limits count the
// frames waiting in the queue; the batch that the writer is writing at the
// moment is not counted, so a connection buffers up to twice the limits.
package wsconn

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wscluster/wscluster/auth"
)

// Close status codes used by the server.
const (
	CloseNormal          = websocket.CloseNormalClosure           // 1000
	CloseGoingAway       = websocket.CloseGoingAway               // 1001: node shutting down
	CloseProtocolError   = websocket.CloseProtocolError           // 1002: frame that breaks RFC 6455
	CloseUnsupportedData = websocket.CloseUnsupportedData         // 1003: binary frame
	CloseInvalidPayload  = websocket.CloseInvalidFramePayloadData // 1007: text that is not UTF-8
	CloseMessageTooBig   = websocket.CloseMessageTooBig           // 1009: frame over the size limit
	ClosePolicyViolation = websocket.ClosePolicyViolation         // 1008: pong timeout
	CloseSlowConsumer    = 4008
)

// ErrClosed is returned by Send after the connection started closing.
var ErrClosed = errors.New("wsconn: connection closed")

// ErrSlowConsumer is returned by the Send call that found the queue full. The
// connection is closed with status 4008.
var ErrSlowConsumer = errors.New("wsconn: slow consumer")

// Config holds the limits shared by every connection of a server. Zero
// fields take the defaults documented on each field.
type Config struct {
	// MaxMessageBytes is the largest client message accepted; a larger one
	// closes the connection with 1009. Default 65536.
	MaxMessageBytes int
	// SendQueueLength is the number of queued frames at which a connection
	// becomes a slow consumer. Default 4096.
	SendQueueLength int
	// SendQueueBytes is the number of queued bytes at which a connection
	// becomes a slow consumer. Default 4 MiB.
	SendQueueBytes int
	// WriteTimeout bounds one blocked write; a connection that cannot take
	// a batch of frames within it is a slow consumer. Default 10s.
	WriteTimeout time.Duration
	// CloseGrace is how long the server tries to send a close frame and
	// waits for the client's reply before it drops the TCP connection.
	// Default 3s.
	CloseGrace time.Duration
	// OnSlowConsumer, if set, is called once for each connection closed as a
	// slow consumer, for metrics.
	OnSlowConsumer func(*Conn)
	// OnBadInput, if set, is called with the close code when a client's
	// frame closes its connection (1003, 1007 or 1009), for metrics. A
	// frame that breaks RFC 6455 closes with 1002 and is not reported.
	OnBadInput func(c *Conn, code int)
	// Handoff, if set, runs fn on another goroutine and returns when fn
	// returned. The reader hands it the handling of every batch of frames
	// it receives, messages included, so that its own goroutine, idle most
	// of its life, never grows a deep stack. A goroutine keeps the largest
	// stack it ever grew until a garbage collection shrinks it. Nil
	// handles frames on the reader's goroutine.
	Handoff func(fn func())
}

// WithDefaults returns a copy of c with every zero field set to its
// default. A Config must pass through it before New uses it.
func (c Config) WithDefaults() Config {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 65536
	}
	if c.SendQueueLength <= 0 {
		c.SendQueueLength = 4096
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 4 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = 3 * time.Second
	}
	return c
}

type state uint8

const (
	stateOpen state = iota
	stateClosing
	stateClosed
)

// Conn is one client connection. Send and Close may be called from any
// goroutine. ReadLoop must be called once, by the goroutine that accepted
// the connection.
type Conn struct {
	id          string
	subprotocol string
	nc          net.Conn
	cfg         *Config
	// baseLog is the server's logger, and log is baseLog with the
	// connection id. log is made on first use, because most connections
	// never log and the logger's copy of its handler costs a few hundred
	// bytes.
	baseLog *slog.Logger
	log     atomic.Pointer[slog.Logger]
	in      inbound
	out     outbound
	// identity is the client token's permissions, or nil without access
	// control. It is set before the read loop starts and never changes.
	identity *auth.Identity

	mu    sync.Mutex
	queue *frameQueue
	// writeLoopFunc is c.writeLoop, made on the first write.
	writeLoopFunc func()
	// held collects the frames sent between HoldSends and ReleaseSends.
	held        [][]byte
	heldBytes   int
	holding     bool
	queuedBytes int
	writing     bool
	state       state
	closeCode   int
	pendingPing bool
	// closeFrame is written after the queue drains once state is closing.
	closeFrame []byte
	// closeWritten is closed when the close frame was written or writing
	// failed; it exists only while the connection is closing.
	closeWritten     chan struct{}
	closeWrittenDone bool
}

// New wraps an upgraded connection. cfg comes from Config.WithDefaults, is
// shared by many connections and must not change while they live. log is
// the server's logger; the connection's own logger adds the attribute conn
// with id.
func New(id string, ws *websocket.Conn, cfg *Config, log *slog.Logger) *Conn {
	if cfg.MaxMessageBytes <= 0 || cfg.SendQueueLength <= 0 {
		panic("wsconn: New needs a Config from Config.WithDefaults")
	}
	// Only the handshake goes through gorilla/websocket. This package reads
	// and writes the frames itself, so the gorilla connection and its read
	// buffer are not kept.
	c := &Conn{id: id, subprotocol: ws.Subprotocol(), nc: ws.NetConn(), cfg: cfg, baseLog: log}
	if sc, ok := c.nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.in.raw, c.out.raw = raw, raw
		}
	}
	return c
}

// SetIdentity records what the client's verified token allows. Call it
// before ReadLoop.
func (c *Conn) SetIdentity(id *auth.Identity) { c.identity = id }

// Identity returns what the client's token allows, or nil when access
// control is off. A nil *auth.Identity allows everything.
func (c *Conn) Identity() *auth.Identity { return c.identity }

// ID returns the connection id, unique in the cluster.
func (c *Conn) ID() string { return c.id }

// Logger returns the connection's logger, which carries its id.
func (c *Conn) Logger() *slog.Logger {
	if l := c.log.Load(); l != nil {
		return l
	}
	c.log.CompareAndSwap(nil, c.baseLog.With("conn", c.id))
	return c.log.Load()
}

// Subprotocol returns the negotiated WebSocket subprotocol.
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Send queues one pre-encoded frame (see TextFrame). It never blocks. It
// returns ErrClosed once the connection is closing, and ErrSlowConsumer when
// the frame would overflow the queue, in which case the connection closes
// with 4008.
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	// An empty queue takes any frame, so that one reply larger than the
	// byte limit (a big roster) does not close a client that keeps up.
	waiting := c.queue.len() + len(c.held)
	full := waiting >= c.cfg.SendQueueLength ||
		(waiting > 0 && c.queuedBytes+len(frame) > c.cfg.SendQueueBytes)
	if full {
		c.closeLocked(CloseSlowConsumer, "slow consumer", true)
		c.mu.Unlock()
		c.reportSlow()
		return ErrSlowConsumer
	}
	c.queuedBytes += len(frame)
	if c.holding {
		c.held = append(c.held, frame)
		c.heldBytes += len(frame)
	} else {
		c.enqueueLocked(frame)
		c.startWriterLocked()
	}
	c.mu.Unlock()
	return nil
}

// HoldSends makes later Sends wait, counted against the queue limits, until
// ReleaseSends. Only the reader goroutine calls it, around a JSON-RPC batch.
func (c *Conn) HoldSends() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// SendsHeld reports whether Sends are held, that is whether a JSON-RPC batch
// is being served, whose responses must all be ready when it ends.
func (c *Conn) SendsHeld() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holding
}

// ReleaseSends queues first, if not nil, then the frames held since
// HoldSends, in order. It returns ErrClosed when the connection is closing.
func (c *Conn) ReleaseSends(first []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.held
	c.held, c.heldBytes, c.holding = nil, 0, false
	if c.state != stateOpen {
		return ErrClosed
	}
	if first != nil {
		c.enqueueLocked(first)
		c.queuedBytes += len(first)
	}
	for _, frame := range held {
		c.enqueueLocked(frame)
	}
	if c.queue.len() > 0 {
		c.startWriterLocked()
	}
	return nil
}

// Close starts closing the connection with a status code. Frames already
// queued are written first, then the close frame. Calling it again, or after
// the connection closed, does nothing.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	c.closeLocked(code, reason, false)
	c.mu.Unlock()
}

// CloseSlowConsumer drops the queue and closes the connection with 4008. The
// pub/sub layer calls it when a client leaves too many QoS 1 messages unacked.
func (c *Conn) CloseSlowConsumer() {
	c.mu.Lock()
	closed := c.closeLocked(CloseSlowConsumer, "slow consumer", true)
	c.mu.Unlock()
	if closed {
		c.reportSlow()
	}
}

func (c *Conn) reportSlow() {
	c.Logger().Warn("closing slow consumer", "code", CloseSlowConsumer)
	if c.cfg.OnSlowConsumer != nil {
		c.cfg.OnSlowConsumer(c)
	}
}

// closeLocked moves an open connection to closing. It returns false when the
// connection was already closing or closed.
func (c *Conn) closeLocked(code int, reason string, discardQueue bool) bool {
	if c.state != stateOpen {
		return false
	}
	c.state = stateClosing
	c.closeCode = code
	c.closeFrame = closeFrame(code, reason)
	c.closeWritten = make(chan struct{})
	if discardQueue {
		releaseQueue(c.queue)
		c.queue, c.held = nil, nil
		c.queuedBytes = 0
	}

	// Both deadlines bound the rest of the connection's life: the writer
	// gives up on a client that does not read, and the reader stops waiting
	// for the client's close frame.
	deadline := time.Now().Add(c.cfg.CloseGrace)
	_ = c.nc.SetWriteDeadline(deadline)
	_ = c.nc.SetReadDeadline(deadline)
	c.startWriterLocked()
	return true
}

func (c *Conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		if c.writeLoopFunc == nil {
			// A go statement with a bound method allocates a closure
			// each time; the method value made once does not.
			c.writeLoopFunc = c.writeLoop
		}
		go c.writeLoopFunc()
	}
}
