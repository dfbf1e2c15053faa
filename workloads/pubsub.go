package workloads

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/history"
)

// padOverhead is the size of `,"pad":""`, which a Payload with a pad has
// beyond one without.
const padOverhead = len(`,"pad":""`)

// pubsubPart is the pub/sub workload: publishers and subscribers on every
// node, every subscriber on every channel.
type pubsubPart struct {
	env         *env
	channels    []string
	publishers  []*publisher
	subscribers []*worker
}

// publisher is a worker that publishes with sequence numbers per
// connection and channel.
type publisher struct {
	*worker
	channels []string
	// seq is the last sequence number per channel of epoch seqEpoch.
	seq      map[string]int64
	seqEpoch int

	// window holds a token for each publish that waits for its result,
	// and inFlight counts the goroutines that wait, when PublishWindow is
	// above 1.
	window   chan struct{}
	inFlight sync.WaitGroup
}

// newPubSub creates the workers, with process ids from base in node order:
// each node's publishers, then its subscribers.
func newPubSub(e *env, base int) *pubsubPart {
	p := &pubsubPart{env: e}
	for i := range e.cfg.Channels {
		p.channels = append(p.channels, fmt.Sprintf("pubsub-%d", i))
	}

	process := base
	for node := range e.cfg.Nodes {
		for range e.cfg.PublishersPerNode {
			w := e.newWorker(process, "publisher", node)
			p.publishers = append(p.publishers, &publisher{worker: w, channels: p.channels, seq: map[string]int64{},
				window: make(chan struct{}, e.cfg.PublishWindow)})
			process++
		}
		for range e.cfg.SubscribersPerNode {
			w := e.newWorker(process, "subscriber", node)
			w.onConnect = func() outcome { return subscribeAll(w, p.channels) }
			p.subscribers = append(p.subscribers, w)
			process++
		}
	}
	return p
}

// processes returns the number of process ids the part uses.
func (p *pubsubPart) processes() int {
	return len(p.publishers) + len(p.subscribers)
}

// subscribeAll subscribes w to every channel, one request at a time, and
// stops at the first info because the connection is then gone.
func subscribeAll(w *worker, channels []string) outcome {
	result := outcomeOk
	for _, channel := range channels {
		o := w.call(history.Op{F: history.FSubscribe, Channel: channel}, func(ctx context.Context, c *client.Client, _ *history.Op) error {
			return c.Subscribe(ctx, channel)
		})
		result = worst(result, o)
		if o == outcomeInfo {
			break
		}
	}
	return result
}

// setup connects every worker to its home node, subscribes the subscribers
// and starts their reconnect loops.
func (p *pubsubPart) setup(ctx context.Context) error {
	workers := append(workersOf(p.publishers), p.subscribers...)
	errs := make([]error, len(workers))
	spawn(len(workers), func(i int) {
		errs[i] = workers[i].connectHome(ctx)
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Subscribers stay subscribed from here until Close: through the main
	// phase, the heal and the recovery wait.
	for _, s := range p.subscribers {
		p.env.active.Add(1)
		go func() {
			defer p.env.active.Done()
			keepConnected(s)
		}()
	}
	return nil
}

// keepConnected reconnects w, which runs onConnect again, whenever its
// connection is lost, until Close.
func keepConnected(w *worker) {
	for {
		select {
		case <-w.env.life.Done():
			return
		case <-w.conn.lost():
			if !w.ensure(w.env.life) {
				return
			}
		}
	}
}

// run publishes from every publisher until ctx ends.
func (p *pubsubPart) run(ctx context.Context) {
	spawn(len(p.publishers), func(i int) {
		p.publishers[i].run(ctx)
	})
}

// workersOf returns the workers of publishers.
func workersOf(publishers []*publisher) []*worker {
	workers := make([]*worker, 0, len(publishers))
	for _, pub := range publishers {
		workers = append(workers, pub.worker)
	}
	return workers
}

// run publishes at PublishRate until ctx ends. The ticker drops the ticks
// missed during a slow publish or a reconnect, so a publisher never catches
// up with a burst.
func (p *publisher) run(ctx context.Context) {
	interval := max(time.Duration(float64(time.Second)/p.env.cfg.PublishRate), time.Microsecond)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	defer p.inFlight.Wait()

	for p.ensure(ctx) {
		select {
		case <-ctx.Done():
			return
		case <-p.conn.lost():
			// The next ensure reconnects.
		case <-ticker.C:
			channel := p.channels[p.choices.IntN(len(p.channels))]
			qos := 0
			if p.choices.Float64() < p.env.cfg.QoS1Fraction {
				qos = 1
			}
			if p.env.cfg.PublishWindow > 1 {
				p.publishPipelined(ctx, channel, qos)
			} else {
				p.publish(channel, qos)
			}
		}
	}
}

// publishPipelined sends one publish of the next payload on channel and
// returns without its result, which a goroutine waits for and records. It
// first waits while PublishWindow publishes wait for their results.
func (p *publisher) publishPipelined(ctx context.Context, channel string, qos int) {
	select {
	case p.window <- struct{}{}:
	case <-ctx.Done():
		return
	case <-p.conn.lost():
		return
	}

	cn := p.conn
	op := p.invoke(history.Op{F: history.FPublish, Channel: channel, QoS: qos, Value: p.payload(channel)})
	if !cn.recordInvoke(op) {
		// The connection ended first, so nothing was sent.
		<-p.window
		return
	}
	pending, sendErr := cn.client.PublishAsync(channel, op.Value, qos)
	p.inFlight.Add(1)
	go func() {
		defer p.inFlight.Done()
		defer func() { <-p.window }()
		done, err := op, sendErr
		if err == nil {
			waitCtx, cancel := context.WithTimeout(p.env.life, p.env.cfg.OpTimeout)
			done.MsgID, err = pending.Wait(waitCtx)
			cancel()
		}
		p.complete(cn, done, err)
	}()
}

// publish records one publish of the next payload on channel.
func (p *publisher) publish(channel string, qos int) outcome {
	data := p.payload(channel)
	op := history.Op{F: history.FPublish, Channel: channel, QoS: qos, Value: data}
	return p.call(op, func(ctx context.Context, c *client.Client, done *history.Op) error {
		msgID, err := c.Publish(ctx, channel, data, qos)
		done.MsgID = msgID
		return err
	})
}

// payload returns the data of the next publish on channel: the publisher's
// process, epoch and sequence number, padded to about PayloadBytes.
func (p *publisher) payload(channel string) json.RawMessage {
	if p.seqEpoch != p.epoch {
		clear(p.seq)
		p.seqEpoch = p.epoch
	}
	p.seq[channel]++

	payload := history.Payload{Process: p.process, Epoch: p.epoch, Seq: p.seq[channel]}
	// Marshal fails only on types such as channels and funcs, and Payload
	// has none.
	data, _ := json.Marshal(payload)
	if n := p.env.cfg.PayloadBytes - len(data) - padOverhead; n > 0 {
		payload.Pad = strings.Repeat("x", n)
		data, _ = json.Marshal(payload)
	}
	return data
}
