package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// completion is a publish the loop sequenced, waiting for its outcome to be
// reported to its publisher.
type completion struct {
	ctx  context.Context
	env  *wire.Envelope
	done func(error)
	// unsent is set when the transport rejected the envelope.
	unsent bool
}

// Publish implements backplane.Backplane. It returns once the message is in
// the replay buffer and queued to every streaming peer, and over an
// acknowledging transport once the medium took it. A mesh never rejects a
// publish: a peer that is cut off gets it from the replay buffer after the
// link returns.
func (c *Cluster) Publish(ctx context.Context, msg backplane.Message) error {
	result := make(chan error, 1)
	c.PublishAsync(ctx, msg, func(err error) { result <- err })
	return <-result
}

// PublishAsync implements backplane.AsyncPublisher: Publish without the
// wait. Publishes are sequenced in the order of the calls, and done runs
// for the publishes that were taken in that same order, on the cluster's
// goroutine or, over an acknowledging transport, on the goroutine that
// reads the acknowledgements. done is called exactly once and must not
// block. A publish whose ctx ends before the loop takes it is not taken.
func (c *Cluster) PublishAsync(ctx context.Context, msg backplane.Message, done func(error)) {
	if !c.started.Load() {
		done(fmt.Errorf("%w: %w", backplane.ErrUnavailable, ErrNotStarted))
		return
	}
	if r, ok := c.cfg.Transport.(Readier); ok && !r.Ready() {
		done(fmt.Errorf("%w: the transport is not ready", backplane.ErrUnavailable))
		return
	}
	queued := c.submit(func(now time.Time) {
		if err := ctx.Err(); err != nil {
			done(fmt.Errorf("%w: %w", backplane.ErrUnavailable, err))
			return
		}
		env := c.node.Publish(now, msg)
		c.completions = append(c.completions, completion{ctx: ctx, env: env, done: done})
	})
	if !queued {
		done(fmt.Errorf("%w: %w", backplane.ErrUnavailable, ErrClosed))
	}
}

// complete reports the publishes sequenced in this round, once carryOut
// handed their envelopes to the transport. It runs on the loop.
func (c *Cluster) complete() {
	pending := c.completions
	c.completions = nil
	if c.acks != nil {
		c.acks.push(pending)
		return
	}
	for _, p := range pending {
		p.done(nil)
	}
}

// markUnsent flags the completion of env, when env is a publish of this
// round, as rejected by the transport.
func (c *Cluster) markUnsent(env *wire.Envelope) {
	if env.Kind != wire.KindPublish {
		return
	}
	for i := range c.completions {
		if c.completions[i].env == env {
			c.completions[i].unsent = true
		}
	}
}

// ackQueue waits, on its own goroutine and in publish order, for the
// transport to acknowledge each publish, then reports the outcome. Redis
// replies to a connection's commands in order, so waiting in order holds
// nothing back, and the publishers hear their outcomes in the order their
// messages were sequenced.
type ackQueue struct {
	c       *Cluster
	ack     Acknowledger
	pending *mailbox[completion]
	done    chan struct{}
}

func newAckQueue(c *Cluster, ack Acknowledger) *ackQueue {
	return &ackQueue{c: c, ack: ack, pending: newMailbox[completion](), done: make(chan struct{})}
}

// push queues completions without blocking the loop.
func (q *ackQueue) push(items []completion) {
	if len(items) > 0 {
		q.pending.put(items...)
	}
}

// run reports outcomes until close, and then the ones still queued.
func (q *ackQueue) run() {
	defer close(q.done)
	for {
		items, closed := q.pending.take()
		for _, item := range items {
			q.settle(item)
		}
		if len(items) > 0 {
			continue
		}
		if closed {
			return
		}
		<-q.pending.wake
	}
}

// settle waits for one publish's acknowledgement and reports it. A publish
// the medium did not take is retracted from the replay buffer, so no later
// replay delivers a message whose publisher got an error. One the medium
// did not confirm stays in the buffer: it may have reached some nodes, and
// the replay after the next link brings it to the others.
func (q *ackQueue) settle(item completion) {
	if item.unsent {
		// The wait then ends at once, and the transport drops its record
		// of the envelope.
		cancelled, cancel := context.WithCancel(item.ctx)
		cancel()
		_ = q.ack.Acknowledged(cancelled, item.env)
		q.retract(item.env)
		item.done(fmt.Errorf("%w: the transport rejected the message", backplane.ErrUnavailable))
		return
	}
	err := q.ack.Acknowledged(item.ctx, item.env)
	switch {
	case err == nil:
		item.done(nil)
	case errors.Is(err, backplane.ErrUnconfirmed):
		item.done(err)
	default:
		q.retract(item.env)
		item.done(fmt.Errorf("%w: %w", backplane.ErrUnavailable, err))
	}
}

// retract takes env out of the replay buffer, on the loop.
func (q *ackQueue) retract(env *wire.Envelope) {
	seq := env.Seq
	q.c.submit(func(time.Time) { q.c.node.Retract(seq) })
}

// close stops run once the queue is empty and waits for it. Call it after
// the loop ended, so that nothing is pushed later, and after the transport
// closed, so that no wait for an acknowledgement lasts.
func (q *ackQueue) close() {
	q.pending.close()
	<-q.done
}
