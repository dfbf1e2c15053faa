package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"
)

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// websocketGUID is the fixed string of the Sec-WebSocket-Accept computation
// (RFC 6455, section 1.3).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxMessageBytes bounds one message from the server, so that a corrupt
// length cannot make the generator allocate without limit.
const maxMessageBytes = 16 << 20

// errProtocol wraps every frame the client cannot accept.
var errProtocol = errors.New("websocket protocol error")

// wsConn is a minimal client WebSocket connection built for load: it reads
// with one large buffer and hands every whole frame in it to a callback, so
// a single read system call serves as many frames as the server wrote.
// Reads happen on one goroutine; writes may come from any goroutine.
type wsConn struct {
	nc net.Conn

	// buf[r:w] holds bytes read but not yet parsed.
	buf  []byte
	r, w int
	// fragments collects the parts of a fragmented message.
	fragments []byte
	fragOp    byte

	wmu  sync.Mutex
	wbuf []byte
}

// dial opens a WebSocket connection to rawURL (ws://host:port/path) offering
// subprotocol, with a read buffer of bufSize bytes.
func dial(ctx context.Context, rawURL, subprotocol string, bufSize int) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return nil, fmt.Errorf("invalid WebSocket URL %q: want ws://host:port/path", rawURL)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	c := &wsConn{nc: nc, buf: make([]byte, bufSize)}
	if deadline, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(deadline)
	}
	if err := c.handshake(u, subprotocol); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("WebSocket handshake with %s: %w", rawURL, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// handshake sends the upgrade request and checks the 101 response. Bytes
// after the response headers stay in the buffer as the first frames.
func (c *wsConn) handshake(u *url.URL, subprotocol string) error {
	var keyBytes [16]byte
	_, _ = rand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key
	if subprotocol != "" {
		req += "\r\nSec-WebSocket-Protocol: " + subprotocol
	}
	req += "\r\n\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return err
	}

	// The response headers are read into the frame buffer, so that
	// nothing the server sends right after them is lost.
	for {
		end := bytes.Index(c.buf[:c.w], []byte("\r\n\r\n"))
		if end >= 0 {
			c.r = end + 4
			return checkUpgradeResponse(c.buf[:end], key)
		}
		if c.w == len(c.buf) {
			return errors.New("response headers larger than the read buffer")
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if err != nil {
			return err
		}
	}
}

func checkUpgradeResponse(head []byte, key string) error {
	status, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("server responded %q instead of 101 Switching Protocols", status)
	}
	sum := sha1.Sum([]byte(key + websocketGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	scanner := bufio.NewScanner(bytes.NewReader(rest))
	for scanner.Scan() {
		name, value, ok := bytes.Cut(scanner.Bytes(), []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			if string(bytes.TrimSpace(value)) != want {
				return errors.New("wrong Sec-WebSocket-Accept")
			}
			return nil
		}
	}
	return errors.New("response lacks Sec-WebSocket-Accept")
}

// writeFrame writes one masked frame. Masking uses a fresh random key per
// frame, as RFC 6455 requires of clients.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i&3]
	}
	c.wbuf = b
	_, err := c.nc.Write(b)
	return err
}

func (c *wsConn) writeText(payload []byte) error { return c.writeFrame(opText, payload) }

// close sends a close frame and closes the TCP connection without waiting
// for the server's reply.
func (c *wsConn) close() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.writeFrame(opClose, []byte{0x03, 0xE8})
	_ = c.nc.Close()
}

// frameHandler receives each whole text message and the time the read that
// completed it returned. The payload is valid only during the call.
type frameHandler func(payload []byte, now time.Time) error

// readLoop reads until an error and passes every text message to handle.
// It sends the pong of every ping itself, and a close frame ends the loop
// with io.EOF.
func (c *wsConn) readLoop(handle frameHandler) error {
	for {
		if err := c.fill(); err != nil {
			return err
		}
		now := time.Now()
		if err := c.parse(handle, now); err != nil {
			return err
		}
	}
}

// readUntil reads until done returns true after a message, for setup
// exchanges such as subscribe.
func (c *wsConn) readUntil(deadline time.Time, done func(payload []byte) (bool, error)) error {
	_ = c.nc.SetReadDeadline(deadline)
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	finished := false
	handle := func(payload []byte, _ time.Time) error {
		if finished {
			return errors.New("unexpected message during setup")
		}
		var err error
		finished, err = done(payload)
		return err
	}
	for {
		// Only the frames up to the awaited reply are taken, so that
		// later ones stay buffered for readLoop.
		if err := c.parseUntil(handle, time.Now(), &finished); err != nil {
			return err
		}
		if finished {
			return nil
		}
		if err := c.fill(); err != nil {
			return err
		}
	}
}

// fill reads once, after moving unparsed bytes to the buffer's start.
func (c *wsConn) fill() error {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.buf) {
		// A frame larger than the buffer: grow it to fit.
		grown := make([]byte, 2*len(c.buf))
		copy(grown, c.buf[:c.w])
		c.buf = grown
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (c *wsConn) parse(handle frameHandler, now time.Time) error {
	return c.parseUntil(handle, now, nil)
}

// parseUntil handles every whole frame in the buffer, stopping early once
// *stop is true.
func (c *wsConn) parseUntil(handle frameHandler, now time.Time, stop *bool) error {
	for stop == nil || !*stop {
		op, fin, payload, size, err := c.nextFrame()
		if err != nil || size == 0 {
			return err
		}
		c.r += size
		if err := c.handleFrame(op, fin, payload, handle, now); err != nil {
			return err
		}
	}
	return nil
}

// nextFrame returns the frame at buf[r:], or size 0 when it is not all there.
func (c *wsConn) nextFrame() (op byte, fin bool, payload []byte, size int, err error) {
	b := c.buf[c.r:c.w]
	if len(b) < 2 {
		return 0, false, nil, 0, nil
	}
	if b[1]&0x80 != 0 {
		return 0, false, nil, 0, fmt.Errorf("%w: masked frame from the server", errProtocol)
	}
	header := 2
	n := uint64(b[1] & 0x7F)
	switch n {
	case 126:
		header = 4
		if len(b) < header {
			return 0, false, nil, 0, nil
		}
		n = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		header = 10
		if len(b) < header {
			return 0, false, nil, 0, nil
		}
		n = binary.BigEndian.Uint64(b[2:])
	}
	if n > maxMessageBytes {
		return 0, false, nil, 0, fmt.Errorf("%w: frame of %d bytes", errProtocol, n)
	}
	total := header + int(n)
	if len(b) < total {
		return 0, false, nil, 0, nil
	}
	return b[0] & 0x0F, b[0]&0x80 != 0, b[header:total], total, nil
}

func (c *wsConn) handleFrame(op byte, fin bool, payload []byte, handle frameHandler, now time.Time) error {
	switch op {
	case opPing:
		return c.writeFrame(opPong, payload)
	case opPong:
		return nil
	case opClose:
		return io.EOF
	case opText:
		if fin {
			return handle(payload, now)
		}
		c.fragOp = op
		c.fragments = append(c.fragments[:0], payload...)
		return nil
	case opContinuation:
		if c.fragOp == 0 {
			return fmt.Errorf("%w: continuation without a first fragment", errProtocol)
		}
		c.fragments = append(c.fragments, payload...)
		if len(c.fragments) > maxMessageBytes {
			return fmt.Errorf("%w: message over %d bytes", errProtocol, maxMessageBytes)
		}
		if !fin {
			return nil
		}
		c.fragOp = 0
		return handle(c.fragments, now)
	default:
		return fmt.Errorf("%w: unexpected opcode %d", errProtocol, op)
	}
}
