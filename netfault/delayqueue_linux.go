//go:build linux

package netfault

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// QueueNum is the NFQUEUE number that the delay rules send packets to. Any
// fixed number works, because each network namespace has its own queues.
const QueueNum uint16 = 5410

// heldPacket is a packet the kernel holds until the delay queue accepts it.
type heldPacket struct {
	id      uint32
	release time.Time
	// generation is the delay generation in force when it arrived. A
	// packet of an older generation than flushed is released at once.
	generation uint64
}

// delayQueue reads packets from an NFQUEUE and accepts each one after the
// delay. It keeps the order of the packets: a packet is never released
// before one that arrived earlier, so jitter delays a packet more, but
// never reorders the stream as netem's jitter does.
//
// NOTE: a 4 MiB TCP transfer through 80 ms took 2.8 s on loopback (about
// 1.5 MB/s, 2-core VM), so this suits fault tests, not bandwidth tests. A
// likely cause is that a held packet still counts against its socket's
// send buffer and TCP small queues, which netem avoids by orphaning it.
type delayQueue struct {
	q      *nfqueueConn
	logger *slog.Logger

	mu          sync.Mutex
	delay       time.Duration
	jitter      time.Duration
	lastRelease time.Time
	generation  uint64

	held          chan heldPacket
	flushed       atomic.Uint64 // packets of generations up to this are released at once
	wake          chan struct{}
	pending       atomic.Int64
	released      atomic.Uint64
	receiveErrors atomic.Uint64
	done          chan struct{}
	stopped       sync.WaitGroup
}

// startDelayQueue binds the queue and starts the goroutines that read it
// and release packets.
func startDelayQueue(logger *slog.Logger) (*delayQueue, error) {
	q, err := bindQueue(QueueNum)
	if err != nil {
		return nil, err
	}
	d := &delayQueue{
		q:      q,
		logger: logger,
		held:   make(chan heldPacket, queueMaxLen),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	d.stopped.Add(2)
	go d.read()
	go d.releaseLoop()
	logger.Info("NFQUEUE bound", "queue", QueueNum)
	return d, nil
}

// set replaces the delay of packets that arrive from now on. A zero delay
// also releases every held packet at once.
func (d *delayQueue) set(delay, jitter time.Duration) {
	d.mu.Lock()
	d.delay, d.jitter = delay, jitter
	d.generation++
	if delay == 0 {
		d.flushed.Store(d.generation)
		d.lastRelease = time.Time{}
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// status returns the current delay and counters.
func (d *delayQueue) status() QueueStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return QueueStatus{
		Bound:         true,
		Queue:         QueueNum,
		Delay:         d.delay,
		Jitter:        d.jitter,
		Pending:       int(d.pending.Load()),
		Released:      d.released.Load(),
		ReceiveErrors: d.receiveErrors.Load(),
	}
}

// schedule returns the release time of a packet that arrives now. It is
// now + delay ± jitter, but not before the previous packet's.
func (d *delayQueue) schedule(id uint32) heldPacket {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	wait := d.delay
	if d.jitter > 0 {
		wait += time.Duration(rand.Int64N(int64(2*d.jitter)+1)) - d.jitter
	}
	release := now.Add(max(wait, 0))
	if release.Before(d.lastRelease) {
		release = d.lastRelease
	}
	d.lastRelease = release
	return heldPacket{id: id, release: release, generation: d.generation}
}

// read passes the id of each queued packet to releaseLoop until the socket
// is closed.
func (d *delayQueue) read() {
	defer d.stopped.Done()
	defer close(d.held)
	for {
		ids, err := d.q.receive()
		if err != nil {
			if d.closing() || errors.Is(err, net.ErrClosed) {
				return
			}

			// ENOBUFS means the kernel dropped packets because this
			// process fell behind, so read on at once. The queue itself
			// keeps working. Other errors wait a moment, so that a
			// persistent one does not spin.
			if d.receiveErrors.Add(1)%1000 == 1 {
				d.logger.Warn("reading NFQUEUE failed", "queue", QueueNum, "error", err, "errors", d.receiveErrors.Load())
			}
			if !errors.Is(err, syscall.ENOBUFS) {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		for _, id := range ids {
			d.pending.Add(1)
			select {
			case d.held <- d.schedule(id):
			case <-d.done:
				return
			}
		}
	}
}

// releaseLoop accepts each held packet at its release time. The packets
// come in id order with release times that never decrease, so one verdict
// for the highest due id accepts every due packet.
func (d *delayQueue) releaseLoop() {
	defer d.stopped.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var next *heldPacket
	for {
		p, ok := d.nextHeld(next)
		if !ok || !d.waitUntilDue(p, timer) {
			return
		}

		// Take the packets behind p that are due as well, and keep the
		// first one that is not for the next round.
		last, count := p.id, int64(1)
		next = nil
		for next == nil && len(d.held) > 0 {
			q := <-d.held
			if d.due(q) {
				last, count = q.id, count+1
			} else {
				next = &q
			}
		}
		if err := d.q.acceptUpTo(last); err != nil && !d.closing() {
			d.logger.Error("accepting delayed packets failed", "queue", QueueNum, "id", last, "error", err)
		}
		d.pending.Add(-count)
		d.released.Add(uint64(count))
	}
}

// nextHeld returns carried if it is set, or else the next packet from read.
func (d *delayQueue) nextHeld(carried *heldPacket) (heldPacket, bool) {
	if carried != nil {
		return *carried, true
	}
	p, ok := <-d.held
	return p, ok
}

// due reports whether p is due now, because its release time passed or a
// zero delay flushed its generation.
func (d *delayQueue) due(p heldPacket) bool {
	return !time.Now().Before(p.release) || p.generation <= d.flushed.Load()
}

// waitUntilDue sleeps until p is due. It returns false when the queue
// closes first.
func (d *delayQueue) waitUntilDue(p heldPacket, timer *time.Timer) bool {
	for !d.due(p) {
		timer.Reset(time.Until(p.release))
		select {
		case <-timer.C:
		case <-d.wake:
			timer.Stop()
		case <-d.done:
			return false
		}
	}
	return true
}

func (d *delayQueue) closing() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitReleased waits up to timeout until no packet is held. Under steady
// traffic with a zero delay, packets are held only for microseconds.
func (d *delayQueue) waitReleased(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for d.pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// close releases the held packets, then closes the socket and waits for
// the goroutines to end.
func (d *delayQueue) close() error {
	d.set(0, 0)
	d.waitReleased(releaseTimeout)
	close(d.done)
	err := d.q.close()
	d.stopped.Wait()
	return err
}
