package client

import (
	"sync"
)

// delivery is a notification and the connection it arrived on, which is
// where its ack must go.
type delivery struct {
	notification Notification
	session      *session
}

// inbox is the unbounded FIFO between the reader and the deliverer. The
// reader bounds it with waitForRoom, except while a request is in flight.
type inbox struct {
	mu     sync.Mutex
	items  []delivery
	closed bool

	ready chan struct{} // signaled when an item is pushed or the inbox is closed
	taken chan struct{} // signaled when the deliverer pops an item
}

func newInbox() *inbox {
	return &inbox{ready: make(chan struct{}, 1), taken: make(chan struct{}, 1)}
}

// push appends d. The supervisor closes the inbox only after every reader
// has exited, so push never runs after close.
func (q *inbox) push(d delivery) {
	q.mu.Lock()
	q.items = append(q.items, d)
	q.mu.Unlock()

	signal(q.ready)
}

// close marks the end of the stream. The deliverer drains what is left.
func (q *inbox) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()

	signal(q.ready)
}

// len returns the number of items not yet popped.
func (q *inbox) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()

	return len(q.items)
}

// pop removes the oldest item, waiting for one if the inbox is empty. It
// returns false when the inbox is closed and empty, or when stop is closed.
func (q *inbox) pop(stop <-chan struct{}) (delivery, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			d := q.items[0]
			q.items[0] = delivery{}
			q.items = q.items[1:]
			q.mu.Unlock()
			signal(q.taken)
			return d, true
		}
		closed := q.closed
		q.mu.Unlock()

		if closed {
			return delivery{}, false
		}
		select {
		case <-q.ready:
		case <-stop:
			return delivery{}, false
		}
	}
}

// signal wakes the waiter on a channel of capacity 1 without blocking. A
// signal that is still pending is enough, so a second one is dropped.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deliver moves notifications from the inbox to the Notifications channel
// and acks QoS 1 messages once they are queued there. It closes the channel
// when the inbox is closed and drained, or at once after Close.
func (c *Client) deliver() {
	defer c.stopped.Done()
	defer close(c.notifications)

	for {
		d, ok := c.inbox.pop(c.ctx.Done())
		if !ok {
			return
		}

		select {
		case c.notifications <- d.notification:
		case <-c.ctx.Done():
			return
		}

		msg := d.notification.Message
		if msg != nil && msg.QoS == 1 && !c.opts.ManualAck {
			c.ackOn(d.session, msg.MsgID)
		}
	}
}
