package wsconn

import (
	"errors"
	"net"
	"time"
)

// writeLoop drains the queue in batches, one writev per batch, and exits
// when the queue is empty. It runs only while there is something to write.
func (c *Conn) writeLoop() {
	for {
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		batch := q.frames()
		c.queuedBytes = c.heldBytes
		closing := c.state == stateClosing
		var closeFrame []byte
		if len(batch) == 0 && closing && c.closeFrame != nil {
			closeFrame, c.closeFrame = c.closeFrame, nil
			batch = [][]byte{closeFrame}
		}
		if len(batch) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		err := c.writeBatch(batch, closing)
		releaseQueue(q)
		if err != nil {
			c.writeFailed(err)
			return
		}
		if closeFrame != nil {
			c.markCloseWritten()
		}
	}
}

// writeFailed ends the connection after a failed write. A timeout while
// open means the client stopped reading, which is a slow consumer.
func (c *Conn) writeFailed(err error) {
	c.mu.Lock()
	wasOpen := c.state == stateOpen
	c.state = stateClosed
	releaseQueue(c.queue)
	c.queue = nil
	c.queuedBytes = 0
	c.writing = false
	if c.closeWritten == nil {
		c.closeWritten = make(chan struct{})
	}
	c.mu.Unlock()

	var netErr net.Error
	if wasOpen && errors.As(err, &netErr) && netErr.Timeout() {
		c.reportSlow()
	} else {
		c.Logger().Debug("write failed", "err", err)
	}
	c.markCloseWritten()
	_ = c.nc.Close()
}

func (c *Conn) markCloseWritten() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closeWrittenDone {
		c.closeWrittenDone = true
		close(c.closeWritten)
	}
}

// ReadLoop reads client messages until the connection ends, passing every
// valid text message to handle on this goroutine; handle may keep the
// message. It enforces the message size limit (1009), rejects binary (1003),
// non-UTF-8 text (1007) and frames that break RFC 6455 (1002), replies to
// pings, and returns after the close handshake finished or timed out and
// the TCP connection is closed.
func (c *Conn) ReadLoop(handle func(msg []byte)) {
	err := c.readFrames(handle)
	c.closeAfterRead(err)
	var badInput *closeRequest
	if errors.As(err, &badInput) {
		c.drain()
	}
	c.finish()
}

// drain discards client frames after a bad-input close until the client's
// close frame, a read error or the close grace deadline that closeLocked
// set. A socket closed with unread data makes the kernel reset the
// connection, so the client would get a write error in place of the code.
func (c *Conn) drain() {
	c.in.discarding = true
	c.in.message, c.in.messageOp = nil, 0
	_ = c.readFrames(func([]byte) {})
}

// closeRequest is a read error that asks for a close with a given code.
type closeRequest struct {
	code   int
	reason string
}

func (e *closeRequest) Error() string { return e.reason }

// closeAfterRead starts the close that fits the error that ended reading.
func (c *Conn) closeAfterRead(err error) {
	var req *closeRequest
	var ce *clientCloseError
	switch {
	case errors.As(err, &req):
		c.Logger().Info("closing connection after bad input", "code", req.code, "reason", req.reason)
		// Protocol errors were never counted as bad input, so the
		// metric keeps its meaning: 1003, 1007 and 1009.
		if c.cfg.OnBadInput != nil && req.code != CloseProtocolError {
			c.cfg.OnBadInput(c, req.code)
		}
		c.Close(req.code, req.reason)
	case errors.As(err, &ce):
		// Echo the client's close code, as RFC 6455 asks; 1005 means the
		// client sent none, and it may not be sent back on the wire.
		code := ce.code
		if code == closeNoStatus {
			code = CloseNormal
		}
		c.Close(code, "")
	default:
		c.mu.Lock()
		timedOut := c.state == stateOpen && isTimeout(err)
		c.mu.Unlock()
		if timedOut {
			c.Logger().Info("closing connection: no pong within the ping interval")
			c.Close(ClosePolicyViolation, "pong timeout")
		} else {
			c.Close(CloseNormal, "")
		}
	}
}

// finish waits until the close frame is written or the grace period ends,
// then closes the TCP connection.
func (c *Conn) finish() {
	c.mu.Lock()
	ch := c.closeWritten
	c.mu.Unlock()
	if ch != nil {
		timer := time.NewTimer(c.cfg.CloseGrace)
		select {
		case <-ch:
		case <-timer.C:
		}
		timer.Stop()
	}
	c.mu.Lock()
	c.state = stateClosed
	c.mu.Unlock()
	_ = c.nc.Close()
}

// CloseCode returns the status code the server closed with, or 0 while the
// connection is open.
func (c *Conn) CloseCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

func (c *Conn) handlePing(appData string) error {
	// An error here would end the read loop, and a full queue already
	// closes the connection as a slow consumer, so the error is dropped.
	_ = c.Send(controlFrame(finPong, []byte(appData)))
	return nil
}

func (c *Conn) handlePong(string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOpen && c.pendingPing {
		c.pendingPing = false
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	return nil
}

// Ping sends a ping and arms a read deadline: without a pong within timeout
// the read loop ends and the connection closes. A server calls it for every
// connection every ping interval, from one goroutine, so that an idle
// connection needs no timer of its own.
func (c *Conn) Ping(timeout time.Duration) {
	c.mu.Lock()
	if c.state != stateOpen || c.pendingPing {
		// A ping still unanswered keeps its earlier deadline.
		c.mu.Unlock()
		return
	}
	c.pendingPing = true
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	c.mu.Unlock()
	_ = c.Send(pingFrame)
}
