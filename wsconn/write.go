package wsconn

import (
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// outbound is the raw socket of the write side. raw is nil when the
// connection is not a plain socket (TLS) and is written with blocking
// writes only.
type outbound struct {
	raw syscall.RawConn
	// writev is the callback of raw.Write, made once per connection so
	// that a write allocates no closure. iov, n and errno carry its
	// argument and results. Only the writer goroutine uses them.
	writev func(fd uintptr) bool
	iov    []syscall.Iovec
	n      uintptr
	errno  syscall.Errno
}

// frameQueue holds the frames queued for a connection. Queues come from
// queuePool and go back once their frames are written, so that a
// connection that gets one frame at a time allocates no queue per frame.
type frameQueue struct {
	list [][]byte
}

// maxPooledFrames bounds the queues kept in the pool, so that one burst
// does not keep a large array alive.
const maxPooledFrames = 256

var queuePool = sync.Pool{New: func() any { return &frameQueue{list: make([][]byte, 0, 8)} }}

func (q *frameQueue) len() int {
	if q == nil {
		return 0
	}
	return len(q.list)
}

func (q *frameQueue) frames() [][]byte {
	if q == nil {
		return nil
	}
	return q.list
}

// enqueueLocked appends frame to the queue, taking a queue from the pool
// when there is none.
func (c *Conn) enqueueLocked(frame []byte) {
	if c.queue == nil {
		c.queue = queuePool.Get().(*frameQueue)
	}
	c.queue.list = append(c.queue.list, frame)
}

// releaseQueue returns a queue whose frames were written or dropped.
func releaseQueue(q *frameQueue) {
	if q == nil || cap(q.list) > maxPooledFrames {
		return
	}
	clear(q.list[:cap(q.list)])
	q.list = q.list[:0]
	queuePool.Put(q)
}

// maxIovecs is IOV_MAX on Linux, the most buffers one writev takes.
const maxIovecs = 1024

var iovecPool = sync.Pool{New: func() any {
	v := make([]syscall.Iovec, 0, 64)
	return &v
}}

// writeBatch writes every frame of batch. It first tries one non-blocking
// writev on the socket, which is all a client that keeps up needs. Only
// the rest of a batch that the socket did not take is written with a
// blocking write under a deadline. Setting a deadline costs two runtime
// timer updates, which the fast path saves on every batch.
func (c *Conn) writeBatch(batch [][]byte, closing bool) error {
	if c.out.raw != nil {
		written, err := c.tryWritev(batch)
		if err != nil {
			return err
		}
		batch = skipWritten(batch, written)
		if len(batch) == 0 {
			return nil
		}
	}

	// While open, a blocked write gets WriteTimeout. Once closing, the
	// close grace deadline set by closeLocked stays in force.
	if !closing {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	}
	buffers := net.Buffers(batch)
	_, err := buffers.WriteTo(c.nc)
	if !closing && err == nil && c.out.raw != nil {
		c.clearWriteDeadline()
	}
	return err
}

// clearWriteDeadline removes the deadline of a blocked write that ended,
// so that a later non-blocking write does not find it expired. A deadline
// that closeLocked set meanwhile stays.
func (c *Conn) clearWriteDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOpen {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
}

// tryWritev writes as much of batch as the socket takes without waiting
// and returns the number of bytes written.
func (c *Conn) tryWritev(batch [][]byte) (int, error) {
	iovp := iovecPool.Get().(*[]syscall.Iovec)
	defer iovecPool.Put(iovp)
	total := 0
	for len(batch) > 0 {
		iov := (*iovp)[:0]
		want := 0
		for _, frame := range batch[:min(len(batch), maxIovecs)] {
			if len(frame) == 0 {
				continue
			}
			v := syscall.Iovec{Base: &frame[0]}
			v.SetLen(len(frame))
			iov = append(iov, v)
			want += len(frame)
		}
		*iovp = iov
		batch = batch[min(len(batch), maxIovecs):]
		if len(iov) == 0 {
			continue
		}
		n, err := c.rawWritev(iov)
		total += n
		if err != nil || n < want {
			return total, err
		}
	}
	return total, nil
}

// rawWritev makes one writev system call on the socket. A full socket
// buffer is not an error: it returns what was written.
func (c *Conn) rawWritev(iov []syscall.Iovec) (int, error) {
	if c.out.writev == nil {
		c.out.writev = c.writevOnce
	}
	c.out.iov = iov
	err := c.out.raw.Write(c.out.writev)
	c.out.iov = nil
	n, errno := c.out.n, c.out.errno
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, &net.OpError{Op: "writev", Net: "tcp", Err: errno}
	}
	return int(n), nil
}

// writevOnce is the raw.Write callback. It returns true at once and never
// waits for the socket, because the caller handles a full socket buffer.
func (c *Conn) writevOnce(fd uintptr) bool {
	iov := c.out.iov
	for {
		c.out.n, _, c.out.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if c.out.errno != syscall.EINTR {
			return true
		}
	}
}

// skipWritten returns batch without its first written bytes. A frame
// written in part is resliced, never modified, because frames are shared
// between connections.
func skipWritten(batch [][]byte, written int) [][]byte {
	for len(batch) > 0 && written >= len(batch[0]) {
		written -= len(batch[0])
		batch = batch[1:]
	}
	if written > 0 {
		rest := make([][]byte, len(batch))
		copy(rest, batch)
		rest[0] = rest[0][written:]
		return rest
	}
	return batch
}
