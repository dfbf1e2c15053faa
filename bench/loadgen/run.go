package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wscluster/wscluster/bench/histogram"
)

// idleReadBuffer is the read buffer of an idle connection: enough for pings
// and the subscribe reply.
const idleReadBuffer = 2 << 10

// Phases of a fanout run, in order.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// generator is the state of one run.
type generator struct {
	cfg     Config
	dialect dialect
	out     *eventWriter

	conns      []*wsConn
	publishers []*publisher
	readers    sync.WaitGroup
	closing    atomic.Bool

	phase           atomic.Int32
	received        atomic.Int64
	windowDelivered atomic.Int64
	latency         *histogram.Histogram
	disconnects     atomic.Int64
}

// Run carries out one run described by cfg. It writes events to events and
// reads control lines from control: fanout mode waits for ControlStart
// after "ready", idle mode waits for ControlStop. The result is also
// written as the last event.
func Run(ctx context.Context, cfg Config, control io.Reader, events io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, _ := newDialect(cfg.Protocol)
	g := &generator{cfg: cfg, dialect: d, out: &eventWriter{w: events}, latency: histogram.New()}
	defer g.closeAll()
	lines := readLines(control)

	var res *Result
	var err error
	if cfg.Mode == ModeIdle {
		res, err = g.runIdle(ctx, lines)
	} else {
		res, err = g.runFanout(ctx, lines)
	}
	if err != nil {
		return nil, err
	}
	g.out.emit(Event{Event: "result", Result: res})
	return res, nil
}

// readLines delivers each line of r on the returned channel, which closes
// at the end of r.
func readLines(r io.Reader) <-chan string {
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(r)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	return lines
}

// awaitLine waits for want on lines. The end of the control stream counts
// as want, so that a generator run by hand ends when its input does.
func awaitLine(ctx context.Context, lines <-chan string, want string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok := <-lines:
			if !ok || line == want {
				return nil
			}
		}
	}
}

// dialAll opens n connections, at most DialConcurrency at a time. open
// returns the connection i with its setup done.
func (g *generator) dialAll(ctx context.Context, n int, open func(i int) (*wsConn, error)) ([]*wsConn, error) {
	conns := make([]*wsConn, n)
	sem := make(chan struct{}, g.cfg.DialConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := open(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
			}
			conns[i] = c
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			g.conns = append(g.conns, c)
		}
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return conns, firstErr
}

// openConn dials url and runs the dialect's setup for channel.
func (g *generator) openConn(ctx context.Context, url, channel string, bufSize int) (*wsConn, error) {
	dialCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	c, err := dial(dialCtx, url, g.dialect.subprotocol(), bufSize)
	if err != nil {
		return nil, err
	}
	if err := g.dialect.setup(c, channel); err != nil {
		c.close()
		return nil, fmt.Errorf("setup on %s: %w", url, err)
	}
	return c, nil
}

// startReader runs c's read loop on a goroutine of its own.
func (g *generator) startReader(c *wsConn, handle func(msg []byte, now time.Time) error) {
	g.readers.Add(1)
	go func() {
		defer g.readers.Done()
		err := c.readLoop(func(payload []byte, now time.Time) error {
			return g.dialect.split(payload, func(msg []byte) error {
				if answered, err := g.dialect.reply(c, msg); answered || err != nil {
					return err
				}
				return handle(msg, now)
			})
		})
		if err != nil && !g.closing.Load() {
			g.disconnects.Add(1)
		}
	}()
}

func (g *generator) closeAll() {
	g.closing.Store(true)
	for _, c := range g.conns {
		c.close()
	}
	g.readers.Wait()
}

// runIdle opens the idle connections and holds them until ControlStop.
func (g *generator) runIdle(ctx context.Context, lines <-chan string) (*Result, error) {
	cfg := &g.cfg
	conns, err := g.dialAll(ctx, cfg.IdleConns, func(i int) (*wsConn, error) {
		url := cfg.SubscribeURLs[i%len(cfg.SubscribeURLs)]
		return g.openConn(ctx, url, cfg.channelName(i%cfg.Channels), idleReadBuffer)
	})
	if err != nil {
		return nil, err
	}
	for _, c := range conns {
		g.startReader(c, func([]byte, time.Time) error { return nil })
	}
	g.out.emit(Event{Event: "ready", Conns: len(conns)})
	if err := awaitLine(ctx, lines, ControlStop); err != nil {
		return nil, err
	}
	return &Result{Mode: cfg.Mode, Protocol: cfg.Protocol, Conns: len(conns), Disconnects: g.disconnects.Load()}, nil
}

// cpuTime returns this process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// eventWriter writes events as JSON lines, one at a time.
type eventWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *eventWriter) emit(ev Event) {
	line, err := json.Marshal(ev)
	if err != nil {
		line = []byte(`{"event":"error"}`)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(line, '\n'))
}
