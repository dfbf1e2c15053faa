package wsconn

import (
	"encoding/binary"
	"io"
	"strconv"
	"sync"
	"syscall"
	"unicode/utf8"
)

// Opcodes of client frames (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// readChunkSize is the size of the pooled buffers that client bytes are
// read into. An idle connection holds none: a reader takes one only while
// the socket has data, so memory per connection does not grow with it.
const readChunkSize = 16 << 10

var readBuffers = sync.Pool{New: func() any {
	b := make([]byte, readChunkSize)
	return &b
}}

// clientCloseError ends reading when the client's close frame arrives.
type clientCloseError struct {
	code int
}

func (e *clientCloseError) Error() string { return "client sent close " + strconv.Itoa(e.code) }

// protocolError returns the close request for a frame that breaks RFC 6455.
func protocolError(reason string) *closeRequest {
	return &closeRequest{CloseProtocolError, "protocol error: " + reason}
}

// inbound is the read side of a connection: the start of a frame whose rest
// has not arrived and the fragments of a message that has not ended. Only
// the reader goroutine touches it.
type inbound struct {
	// raw reads the socket without blocking, or is nil when the
	// connection is not a plain socket (TLS), which is then read with
	// blocking reads.
	raw syscall.RawConn
	// pending holds the start of a frame whose rest has not arrived.
	pending []byte
	// message collects the payload of a fragmented message; messageOp is
	// its opcode, or 0 when no message is in progress.
	message   []byte
	messageOp byte
	// discarding is set after bad input: data frames are skipped, and
	// only control frames are acted on, until the client's close frame.
	discarding bool
	// skip counts the payload bytes of a discarded frame still to drop.
	skip int64
}

// frameHeader is the decoded start of a client frame.
type frameHeader struct {
	fin        bool
	rsv        byte
	op         byte
	masked     bool
	key        [4]byte
	headerLen  int
	payloadLen int64
}

// maxFrameHeader is the largest client frame header: 2 bytes, an 8-byte
// length and a 4-byte mask key.
const maxFrameHeader = 14

// parseHeader decodes the frame header at the start of b, or returns false
// while b does not hold all of it.
func parseHeader(b []byte) (frameHeader, bool) {
	if len(b) < 2 {
		return frameHeader{}, false
	}
	h := frameHeader{fin: b[0]&0x80 != 0, rsv: b[0] & 0x70, op: b[0] & 0x0F, masked: b[1]&0x80 != 0, headerLen: 2}
	h.payloadLen = int64(b[1] & 0x7F)
	switch h.payloadLen {
	case 126:
		h.headerLen = 4
		if len(b) < h.headerLen {
			return frameHeader{}, false
		}
		h.payloadLen = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		h.headerLen = 10
		if len(b) < h.headerLen {
			return frameHeader{}, false
		}
		// RFC 6455 requires the top bit to be 0; a larger length is
		// capped, and the size limit then refuses it.
		h.payloadLen = int64(binary.BigEndian.Uint64(b[2:]) & (1<<62 - 1))
	}
	if h.masked {
		if len(b) < h.headerLen+4 {
			return frameHeader{}, false
		}
		copy(h.key[:], b[h.headerLen:])
		h.headerLen += 4
	}
	return h, true
}

// readFrames reads and handles client frames until an error ends reading.
// handle gets each whole text message, which it may keep; it runs through
// Config.Handoff when that is set.
func (c *Conn) readFrames(handle func(msg []byte)) error {
	for {
		buf, n, err := c.readChunk()
		if n > 0 {
			var used int
			var perr error
			parse := func() { used, perr = c.parseFrames((*buf)[:n], handle) }
			if c.cfg.Handoff != nil {
				c.cfg.Handoff(parse)
			} else {
				parse()
			}
			c.keepPending((*buf)[used:n])
			if perr != nil {
				c.releaseChunk(buf)
				return perr
			}
		}
		c.releaseChunk(buf)
		if err != nil {
			return err
		}
	}
}

// readChunk returns a buffer that starts with the pending bytes, followed
// by whatever the socket has, n bytes in all. It waits for data without
// holding a buffer.
func (c *Conn) readChunk() (*[]byte, int, error) {
	start := len(c.in.pending)
	need := max(readChunkSize, c.pendingFrameSize(), start+1)
	var buf *[]byte
	take := func() {
		if need <= readChunkSize {
			buf = readBuffers.Get().(*[]byte)
		} else {
			big := make([]byte, need)
			buf = &big
		}
		copy(*buf, c.in.pending)
	}
	if c.in.raw == nil {
		take()
		n, err := c.nc.Read((*buf)[start:])
		return buf, start + n, err
	}

	// The read is tried inside the callback, and a buffer taken only for
	// it: when the socket has nothing, the buffer goes back to the pool
	// before the runtime parks the goroutine until the socket is readable.
	var n int
	var readErr error
	err := c.in.raw.Read(func(fd uintptr) bool {
		take()
		n, readErr = syscall.Read(int(fd), (*buf)[start:])
		if readErr == syscall.EAGAIN {
			c.releaseChunk(buf)
			buf = nil
			return false
		}
		return readErr != syscall.EINTR
	})
	switch {
	case err != nil:
		return buf, start, err
	case readErr != nil:
		return buf, start, readErr
	case n == 0:
		return buf, start, io.EOF
	}
	return buf, start + n, nil
}

func (c *Conn) releaseChunk(buf *[]byte) {
	if buf != nil && cap(*buf) == readChunkSize {
		readBuffers.Put(buf)
	}
}

// keepPending copies the bytes of an incomplete frame out of the shared
// buffer.
func (c *Conn) keepPending(rest []byte) {
	if len(rest) == 0 {
		c.in.pending = nil
		return
	}
	c.in.pending = append([]byte(nil), rest...)
}

// pendingFrameSize returns the size of the incomplete frame in pending, or
// 0 while its header is incomplete or its payload is being skipped.
// Frames over the size limit never stay pending: checkHeader refuses them.
func (c *Conn) pendingFrameSize() int {
	h, ok := parseHeader(c.in.pending)
	if !ok || c.in.skip > 0 || h.payloadLen > int64(c.cfg.MaxMessageBytes) {
		return 0
	}
	return h.headerLen + int(h.payloadLen)
}

// parseFrames handles every whole frame at the start of b and returns the
// number of bytes used.
func (c *Conn) parseFrames(b []byte, handle func([]byte)) (int, error) {
	used := 0
	for used < len(b) {
		rest := b[used:]
		if c.in.skip > 0 {
			n := min(int64(len(rest)), c.in.skip)
			c.in.skip -= n
			used += int(n)
			continue
		}
		h, ok := parseHeader(rest)
		if !ok {
			return used, nil
		}
		if err := c.checkHeader(h); err != nil {
			return used, err
		}
		if c.in.discarding && h.op < opClose {
			used += h.headerLen
			c.in.skip = h.payloadLen
			continue
		}
		end := int64(h.headerLen) + h.payloadLen
		if end > int64(len(rest)) {
			return used, nil
		}
		err := c.handleFrame(h, rest[h.headerLen:end], handle)
		used += int(end)
		if err != nil {
			return used, err
		}
	}
	return used, nil
}

// checkHeader validates a frame header before its payload is read, so that
// a frame over the size limit is refused without buffering it.
func (c *Conn) checkHeader(h frameHeader) error {
	switch {
	case h.rsv != 0:
		return protocolError("reserved bits set without a negotiated extension")
	case !h.masked:
		return protocolError("client frame not masked")
	case h.op > opPong || (h.op > opBinary && h.op < opClose):
		return protocolError("unknown opcode " + strconv.Itoa(int(h.op)))
	case h.op >= opClose && (!h.fin || h.payloadLen > maxControlPayload):
		return protocolError("control frame fragmented or longer than 125 bytes")
	case h.op < opClose && !c.in.discarding && int64(len(c.in.message))+h.payloadLen > int64(c.cfg.MaxMessageBytes):
		return &closeRequest{CloseMessageTooBig, "message too big: the limit is " + strconv.Itoa(c.cfg.MaxMessageBytes) + " bytes"}
	}
	return nil
}

// handleFrame acts on one whole frame; payload is still masked.
func (c *Conn) handleFrame(h frameHeader, payload []byte, handle func([]byte)) error {
	unmask(h.key, payload)
	switch h.op {
	case opPing:
		return c.handlePing(string(payload))
	case opPong:
		return c.handlePong(string(payload))
	case opClose:
		return closeFrameError(payload)
	case opText, opBinary:
		if c.in.messageOp != 0 {
			return protocolError("a new message started before the previous one ended")
		}
		if h.op == opBinary {
			return &closeRequest{CloseUnsupportedData, "binary frames are not supported: send JSON-RPC as text"}
		}
		if !h.fin {
			c.in.messageOp = h.op
			c.in.message = append(c.in.message[:0], payload...)
			return nil
		}
		return c.deliver(append([]byte(nil), payload...), handle)
	default: // opContinuation
		if c.in.messageOp == 0 {
			return protocolError("continuation frame without a message to continue")
		}
		c.in.message = append(c.in.message, payload...)
		if !h.fin {
			return nil
		}
		msg := c.in.message
		c.in.message, c.in.messageOp = nil, 0
		return c.deliver(msg, handle)
	}
}

// deliver passes a whole text message to handle after checking its UTF-8.
func (c *Conn) deliver(msg []byte, handle func([]byte)) error {
	if !utf8.Valid(msg) {
		return &closeRequest{CloseInvalidPayload, "text frame is not valid UTF-8"}
	}
	handle(msg)
	return nil
}

// closeFrameError decodes the client's close frame. A malformed one is a
// protocol error.
func closeFrameError(payload []byte) error {
	switch {
	case len(payload) == 0:
		return &clientCloseError{code: closeNoStatus}
	case len(payload) == 1:
		return protocolError("close frame with a 1-byte payload")
	}
	code := int(binary.BigEndian.Uint16(payload))
	if !validReceivedCloseCode(code) {
		return protocolError("invalid close code " + strconv.Itoa(code))
	}
	if !utf8.Valid(payload[2:]) {
		return protocolError("close reason is not valid UTF-8")
	}
	return &clientCloseError{code: code}
}

// closeNoStatus stands for a close frame without a status code (RFC 6455,
// section 7.1.5); it is never sent on the wire.
const closeNoStatus = 1005

// validReceivedCloseCode reports whether a client may send code: the codes
// RFC 6455 defines for use on the wire, the ones IANA registered since,
// and the range 3000-4999 for libraries and applications.
func validReceivedCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}

// unmask applies a client's masking key to payload in place, eight bytes at
// a time where it can.
func unmask(key [4]byte, payload []byte) {
	if len(payload) >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		k |= k << 32
		for len(payload) >= 8 {
			binary.LittleEndian.PutUint64(payload, binary.LittleEndian.Uint64(payload)^k)
			payload = payload[8:]
		}
	}
	for i := range payload {
		payload[i] ^= key[i&3]
	}
}
