package mesh

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/wscluster/wscluster/cluster/wire"
)

// closeFlushTimeout bounds how long Close waits for the links to write what
// is queued.
const closeFlushTimeout = time.Second

// writeLoop writes queued envelopes in batches: each wake-up takes the
// whole queue, encodes it into one reused buffer and writes it with one
// call. An idle link gets a keepalive every heartbeat interval.
func (l *link) writeLoop() {
	defer l.t.wg.Done()
	ticker := time.NewTicker(l.t.cfg.HeartbeatInterval)
	defer ticker.Stop()

	var buf []byte
	var batch []*wire.Envelope
	wrote := false
	for {
		select {
		case <-l.done:
			return
		case <-ticker.C:
			if !wrote {
				if err := l.write(make([]byte, frameHeaderSize)); err != nil {
					l.close(fmt.Errorf("write keepalive: %w", err))
					return
				}
			}
			wrote = false
			continue
		case <-l.notify:
		}

		// Swap the queue with the emptied batch slice, so both are reused.
		l.mu.Lock()
		batch, l.queue = l.queue, batch[:0]
		draining := l.draining
		l.mu.Unlock()

		var err error
		buf, err = l.writeBatch(buf, batch)
		clear(batch)
		if err != nil {
			l.close(fmt.Errorf("write: %w", err))
			return
		}
		wrote = wrote || len(batch) > 0
		if draining && l.queueEmpty() {
			// The writer stops here, so no keepalive follows the half
			// close that flushLinks does next.
			l.flushOnce.Do(func() { close(l.flushed) })
			return
		}
	}
}

// writeBatch encodes and writes batch, in several writes only when it
// exceeds maxBatchBytes. It returns the buffer for reuse.
func (l *link) writeBatch(buf []byte, batch []*wire.Envelope) ([]byte, error) {
	var counts [kindSlots]int
	buf = buf[:0]
	for _, env := range batch {
		var ok bool
		if buf, ok = l.appendFrame(buf, env); !ok {
			continue
		}
		if int(env.Kind) < kindSlots {
			counts[env.Kind]++
		} else {
			l.counter(&l.sent, l.t.metrics.PeerEnvelopesSent, env.Kind).Inc()
		}

		if len(buf) >= maxBatchBytes {
			if err := l.write(buf); err != nil {
				return buf, err
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		if err := l.write(buf); err != nil {
			return buf, err
		}
	}

	// Count after the write, so the counters show what left this node.
	for kind, n := range counts {
		if n > 0 {
			l.counter(&l.sent, l.t.metrics.PeerEnvelopesSent, wire.Kind(kind)).Add(float64(n))
		}
	}
	if cap(buf) > maxRetainedBuffer {
		buf = nil
	}
	return buf, nil
}

// appendFrame appends the frame of env to buf. It returns false, with buf
// unchanged, for an envelope over MaxFrameBytes: the peer would drop the
// link for it, and the replay would send it again, so it is dropped here.
func (l *link) appendFrame(buf []byte, env *wire.Envelope) ([]byte, bool) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	buf = wire.Append(buf, env)
	size := len(buf) - start - frameHeaderSize
	if size > l.t.cfg.MaxFrameBytes {
		l.log.Error("envelope not sent", "kind", env.Kind.String(), "error",
			fmt.Errorf("%w: %d bytes, max %d", errTooLarge, size, l.t.cfg.MaxFrameBytes))
		return buf[:start], false
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(size))
	return buf, true
}

// write writes b within the dead-link timeout, so a peer that stopped
// reading cannot block the writer for longer.
func (l *link) write(b []byte) error {
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.t.linkIdle))
	_, err := l.conn.Write(b)
	return err
}

func (l *link) queueEmpty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue) == 0
}

// startDrain makes the writer close flushed once the queue is written.
func (l *link) startDrain() {
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	signal(l.notify)
}

// flushLinks lets every link write its queue, then half-closes it and
// waits for the peer to close its side, up to timeout in total. Closing a
// socket outright while the peer's last frames sit unread in its receive
// buffer makes the kernel send a reset, and the peer may then lose what this
// node wrote last, such as its leave.
func flushLinks(links []*link, timeout time.Duration) {
	for _, l := range links {
		l.startDrain()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for _, l := range links {
		select {
		case <-l.flushed:
			l.closeWrite()
		case <-l.done:
		case <-timer.C:
			return
		}
	}
	for _, l := range links {
		select {
		case <-l.done:
		case <-timer.C:
			return
		}
	}
}

// closeWrite sends the peer an end of stream while the reader keeps
// reading, so the link ends when the peer closes its side.
func (l *link) closeWrite() {
	if cw, ok := l.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	if cw, ok := l.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
