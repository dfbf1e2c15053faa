package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// stallTimeout is how long a closed-loop publisher waits for the oldest
// publish in flight to reach every subscriber before it gives up on it.
const stallTimeout = time.Second

// publisher is one publishing connection and its closed-loop bookkeeping.
type publisher struct {
	conn    *wsConn
	index   int
	channel string
	subs    int32

	sent, acks, errs atomic.Int64
	windowSent       atomic.Int64
	// delivered[seq % len] counts the subscribers that received seq.
	delivered []atomic.Int32
	// completed counts publishes that reached every subscriber, plus
	// those given up on after stallTimeout.
	completed atomic.Int64
	stalls    atomic.Int64
	wake      chan struct{}
}

// received records that one subscriber received seq.
func (p *publisher) received(seq int64) {
	if p.delivered[seq%int64(len(p.delivered))].Add(1) == p.subs {
		p.completed.Add(1)
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// runFanout opens subscribers and publishers, waits for ControlStart,
// publishes through warmup and the measurement window, and drains.
func (g *generator) runFanout(ctx context.Context, lines <-chan string) (*Result, error) {
	if err := g.openPublishers(ctx); err != nil {
		return nil, err
	}
	if err := g.openSubscribers(ctx); err != nil {
		return nil, err
	}
	g.out.emit(Event{Event: "ready", Conns: len(g.conns)})
	if err := awaitLine(ctx, lines, ControlStart); err != nil {
		return nil, err
	}

	// Publishers run until stop closes; the phases move on the clock.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range g.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.publish(p, stop)
		}()
	}
	res, err := g.measure(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	g.drain(ctx, res)
	return res, nil
}

// measure runs the warmup and the window, and returns the window's figures.
func (g *generator) measure(ctx context.Context) (*Result, error) {
	cfg := &g.cfg
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		return nil, err
	}
	cpuBegin := cpuTime()
	begin := time.Now()
	g.phase.Store(phaseMeasure)
	g.out.emit(Event{Event: "measure-begin"})

	err := sleepCtx(ctx, cfg.Duration)
	g.phase.Store(phaseDone)
	elapsed := time.Since(begin)
	cpu := cpuTime() - cpuBegin
	g.out.emit(Event{Event: "measure-end"})
	if err != nil {
		return nil, err
	}
	res := &Result{
		Mode:            cfg.Mode,
		Protocol:        cfg.Protocol,
		Conns:           len(g.conns),
		WindowDelivered: g.windowDelivered.Load(),
		WindowSeconds:   elapsed.Seconds(),
		CPUSeconds:      cpu.Seconds(),
		Latency:         g.latency.Sparse(),
	}
	for _, p := range g.publishers {
		res.WindowPublishes += p.windowSent.Load()
	}
	return res, nil
}

// drain waits until every expected delivery arrived or cfg.Drain passed,
// then fills in the run's totals.
func (g *generator) drain(ctx context.Context, res *Result) {
	expected := func() int64 {
		var total int64
		for _, p := range g.publishers {
			total += (p.sent.Load() - p.errs.Load()) * int64(p.subs)
		}
		return total
	}
	deadline := time.Now().Add(g.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if g.received.Load() >= expected() && g.acksDone() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range g.publishers {
		res.Publishes += p.sent.Load()
		res.PublishAcks += p.acks.Load()
		res.PublishErrors += p.errs.Load()
		res.Stalls += p.stalls.Load()
	}
	res.Expected = expected()
	res.Received = g.received.Load()
	res.Lost = max(0, res.Expected-res.Received)
	res.Disconnects = g.disconnects.Load()
}

// acksDone reports whether every publish got its reply.
func (g *generator) acksDone() bool {
	for _, p := range g.publishers {
		if p.acks.Load()+p.errs.Load() < p.sent.Load() {
			return false
		}
	}
	return true
}

func (g *generator) openPublishers(ctx context.Context) error {
	cfg := &g.cfg
	n := cfg.Channels * cfg.PublishersPerChannel
	ring := 4 * cfg.Window
	if ring < 1024 {
		ring = 1024
	}
	conns, err := g.dialAll(ctx, n, func(i int) (*wsConn, error) {
		return g.openConn(ctx, cfg.PublishURLs[i%len(cfg.PublishURLs)], "", cfg.ReadBufferBytes)
	})
	if err != nil {
		return err
	}
	for i, c := range conns {
		p := &publisher{
			conn:      c,
			index:     i,
			channel:   cfg.channelName(i % cfg.Channels),
			subs:      int32(cfg.SubscribersPerChannel),
			delivered: make([]atomic.Int32, ring),
			wake:      make(chan struct{}, 1),
		}
		g.publishers = append(g.publishers, p)
		g.startReader(c, g.ackHandler(p))
	}
	return nil
}

// ackHandler counts the publish replies of p.
func (g *generator) ackHandler(p *publisher) func([]byte, time.Time) error {
	return func(msg []byte, _ time.Time) error {
		if !bytes.Contains(msg, []byte(`"id":`)) {
			return nil
		}
		if bytes.Contains(msg, []byte(`"error"`)) {
			p.errs.Add(1)
			return nil
		}
		p.acks.Add(1)
		return nil
	}
}

// openSubscribers opens SubscribersPerChannel connections per channel.
func (g *generator) openSubscribers(ctx context.Context) error {
	cfg := &g.cfg
	n := cfg.Channels * cfg.SubscribersPerChannel
	conns, err := g.dialAll(ctx, n, func(i int) (*wsConn, error) {
		url := cfg.SubscribeURLs[i%len(cfg.SubscribeURLs)]
		return g.openConn(ctx, url, cfg.channelName(i%cfg.Channels), cfg.ReadBufferBytes)
	})
	if err != nil {
		return err
	}
	for _, c := range conns {
		g.startReader(c, g.deliver)
	}
	return nil
}

// deliver counts one message received by a subscriber.
func (g *generator) deliver(msg []byte, now time.Time) error {
	s, ok := parseStamp(msg)
	if !ok {
		return nil
	}
	if s.publisher < 0 || s.publisher >= len(g.publishers) {
		return fmt.Errorf("message from unknown publisher %d", s.publisher)
	}
	g.received.Add(1)
	g.publishers[s.publisher].received(s.seq)
	if g.phase.Load() == phaseMeasure {
		g.windowDelivered.Add(1)
		g.latency.Record(time.Duration(now.UnixNano() - s.sentNanos))
	}
	return nil
}

// publish sends publishes from p until stop closes, at the configured rate
// or, at rate 0, in a closed loop.
func (g *generator) publish(p *publisher, stop <-chan struct{}) {
	cfg := &g.cfg
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(g.publishers)) / cfg.Rate)
	}
	var data, frame []byte
	next := time.Now()
	for seq := int64(0); ; seq++ {
		if interval > 0 {
			next = next.Add(interval)
			if !sleepUntil(next, stop) {
				return
			}
		} else if !g.awaitWindow(p, seq, stop) {
			return
		}
		p.delivered[seq%int64(len(p.delivered))].Store(0)
		sentAt := time.Now()
		data = appendData(data[:0], sentAt.UnixNano(), p.index, seq, cfg.PayloadBytes)
		frame = g.dialect.publish(frame[:0], uint64(seq)+1, p.channel, data)
		if err := p.conn.writeText(frame); err != nil {
			return
		}
		p.sent.Add(1)
		if g.phase.Load() == phaseMeasure {
			p.windowSent.Add(1)
		}
	}
}

// awaitWindow blocks until publish seq fits in the closed-loop window. It
// returns false when stop closed.
func (g *generator) awaitWindow(p *publisher, seq int64, stop <-chan struct{}) bool {
	timer := time.NewTimer(stallTimeout)
	defer timer.Stop()
	for seq-p.completed.Load() >= int64(g.cfg.Window) {
		select {
		case <-stop:
			return false
		case <-p.wake:
		case <-timer.C:
			// The oldest publish is given up on, so that one lost message
			// cannot stop the run; the stall is reported.
			p.stalls.Add(1)
			p.completed.Add(1)
			timer.Reset(stallTimeout)
		}
	}
	select {
	case <-stop:
		return false
	default:
		return true
	}
}

// sleepUntil waits until t, or returns false when stop closes first.
func sleepUntil(t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-stop:
		return false
	case <-timer.C:
		return true
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
