package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Sizes of the forwarding buffers.
const (
	// chunkSize is the largest chunk read at once.
	chunkSize = 32 << 10
	// queuedChunks bounds the chunks read but not yet written, per
	// direction, so a slow or delayed receiver pushes back on the sender.
	queuedChunks = 64
)

// pair is one client connection and, once dialed, its connection to the
// target.
type pair struct {
	client net.Conn
	done   chan struct{} // closed when the pair ends

	mu     sync.Mutex
	server net.Conn
	ended  bool
	once   sync.Once
}

// chunk is bytes read from one side, due to be written at a given time.
type chunk struct {
	data []byte
	due  time.Time
}

func newPair(client net.Conn) *pair {
	return &pair{client: client, done: make(chan struct{})}
}

// setServer records the target connection. It returns false when the pair
// ended during the dial, and then the caller must close server.
func (c *pair) setServer(server net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	c.server = server
	return true
}

// close ends the pair with an orderly close of both connections.
func (c *pair) close() { c.end(false) }

// reset ends the pair with a TCP reset on both connections.
func (c *pair) reset() { c.end(true) }

func (c *pair) end(reset bool) {
	c.once.Do(func() {
		c.mu.Lock()
		c.ended = true
		server := c.server
		c.mu.Unlock()

		close(c.done)
		for _, conn := range []net.Conn{c.client, server} {
			switch {
			case conn == nil:
			case reset:
				resetConn(conn)
			default:
				_ = conn.Close()
			}
		}
	})
}

// serve dials the target for c and forwards bytes both ways until both
// directions reach end of stream or the pair ends.
func (p *Proxy) serve(c *pair) {
	defer p.wg.Done()
	defer p.forget(c)
	defer c.close()

	// A blackholed proxy dials only after Heal, like a partition that
	// drops the connection's SYN until it heals.
	if !p.waitForwarding(c) {
		return
	}
	server, err := p.dialTarget(c)
	if err != nil {
		p.log.Debug("dialing the target failed; closing the client connection", "error", err)
		c.reset()
		return
	}
	if !c.setServer(server) {
		_ = server.Close()
		return
	}

	var directions sync.WaitGroup
	directions.Add(2)
	go func() {
		defer directions.Done()
		p.pipe(c, server, c.client)
	}()
	go func() {
		defer directions.Done()
		p.pipe(c, c.client, server)
	}()
	directions.Wait()
}

// dialTarget dials the target, giving up when c ends or after DialTimeout.
func (p *Proxy) dialTarget(c *pair) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	var dialer net.Dialer
	return dialer.DialContext(ctx, "tcp", p.target)
}

// pipe forwards src to dst. A reader goroutine stamps each chunk with its
// due time and this goroutine writes it when due, so that latency delays
// chunks without limiting throughput.
func (p *Proxy) pipe(c *pair, dst, src net.Conn) {
	chunks := make(chan chunk, queuedChunks)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.readChunks(c, src, chunks)
	}()
	p.writeChunks(c, dst, chunks)
	<-readerDone
}

// readChunks reads src until end of stream, an error or the end of c, and
// closes chunks when it stops.
func (p *Proxy) readChunks(c *pair, src net.Conn, chunks chan<- chunk) {
	defer close(chunks)
	var lastDue time.Time
	for {
		if !p.waitForwarding(c) {
			return
		}
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		if n > 0 {
			// A chunk never overtakes the one before it, because TCP
			// delivers bytes in order.
			due := time.Now().Add(p.chunkDelay())
			if due.Before(lastDue) {
				due = lastDue
			}
			lastDue = due
			select {
			case chunks <- chunk{data: buf[:n], due: due}:
			case <-c.done:
				return
			}
		}
		if err != nil {
			// A reset or other failure on one side ends both sides. An
			// end of stream is passed on as a half-close by writeChunks.
			if !errors.Is(err, io.EOF) {
				c.reset()
			}
			return
		}
	}
}

// writeChunks writes each chunk to dst when it is due and bytes may flow.
// After the last chunk of a src that reached end of stream, it closes the
// write side of dst.
func (p *Proxy) writeChunks(c *pair, dst net.Conn, chunks <-chan chunk) {
	for ch := range chunks {
		if !sleepUntil(ch.due, c.done) || !p.waitForwarding(c) {
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.reset()
			return
		}
	}
	if tcp, ok := dst.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
}

// sleepUntil waits until due or until done is closed. It returns false
// when done was closed first.
func sleepUntil(due time.Time, done <-chan struct{}) bool {
	wait := time.Until(due)
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-done:
		return false
	}
}
