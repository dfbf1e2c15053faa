package workloads

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/history"
)

// Reconnect timing. After a lost connection or an info, a worker waits
// between reconnectPause and twice that before it dials again. A failed dial
// waits backoffMin, doubling up to backoffMax, so a dead cluster costs a few
// dials per second at most.
const (
	reconnectPause = 100 * time.Millisecond
	backoffMin     = 100 * time.Millisecond
	backoffMax     = 2 * time.Second
)

// env is the state that every worker of one workload shares.
type env struct {
	cfg Config
	rec *history.Recorder
	log *slog.Logger

	// life ends when Close is called. Every request is bounded by it, so
	// Close does not wait for timeouts.
	life context.Context
	stop context.CancelFunc

	// finalBase is the first process id of the final readers, after every
	// worker.
	finalBase int

	completed atomic.Int64

	// mu guards workers and closed. active counts the calls of Setup, Run,
	// Observe and Final in progress and the goroutines they leave running,
	// so Close can wait for every one of them before it closes connections.
	mu      sync.Mutex
	workers []*worker
	closed  bool
	active  sync.WaitGroup
}

func newEnv(cfg Config) *env {
	e := &env{cfg: cfg, rec: cfg.Recorder, log: cfg.Logger}
	e.life, e.stop = context.WithCancel(context.Background())
	return e
}

// outcome is the completion type of a client operation, ordered from best
// to worst.
type outcome int

const (
	outcomeOk outcome = iota
	outcomeFail
	outcomeInfo
)

// worker is one process: a client that runs one operation at a time over
// one connection at a time. A worker is used by one goroutine at a time.
type worker struct {
	env     *env
	process int
	role    string
	home    int
	log     *slog.Logger

	// choices draws the workload's operations; network draws reconnect
	// targets and pauses. Keeping them apart makes the operation sequence
	// independent of faults.
	choices *rand.Rand
	network *rand.Rand

	node  int   // index of the current or last node
	epoch int   // epoch of the current or last connection
	conn  *conn // nil when the worker has no connection

	// preferHome makes reconnects try the home node first, for observers
	// that must read on every node during the recovery wait.
	preferHome bool
	// viaProxy makes every connection go through a proxy of its own, so
	// that the worker can make it silent.
	viaProxy bool

	// onConnect runs after every connect, for example to subscribe again.
	// It returns the worst outcome of its operations. After outcomeInfo the
	// connection was abandoned and the worker connects again.
	onConnect func() outcome
}

// newWorker creates the worker of process, whose first node is home.
func (e *env) newWorker(process int, role string, home int) *worker {
	seed := uint64(e.cfg.Seed)
	w := &worker{
		env:     e,
		process: process,
		role:    role,
		home:    home,
		node:    home,
		log:     e.log.With("process", process, "role", role),
		choices: rand.New(rand.NewPCG(seed, uint64(process))),
		network: rand.New(rand.NewPCG(seed, uint64(process)|1<<62)),
	}
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()

	return w
}

// nodeID returns the id of the worker's current or last node.
func (w *worker) nodeID() string {
	return w.env.cfg.Nodes[w.node].ID
}

// dial records one FConnect to node index node as the next epoch.
func (w *worker) dial(ctx context.Context, node int) error {
	target := w.env.cfg.Nodes[node]
	log := w.log.With("node", target.ID)

	// The dial ends with Close too, so Close does not wait for it.
	ctx, cancel := w.env.bound(ctx)
	defer cancel()

	c, err := dialConn(ctx, w.env.rec, w.process, w.epoch+1, target, w.env.cfg.OpTimeout, w.viaProxy, log)
	w.env.completed.Add(1)
	if err != nil {
		return err
	}

	w.node, w.conn = node, c
	w.epoch++
	log.Info("connected", "epoch", w.epoch)
	return nil
}

// connectHome dials the home node once, for Setup.
func (w *worker) connectHome(ctx context.Context) error {
	if err := w.dial(ctx, w.home); err != nil {
		return fmt.Errorf("process %d: connect to home node %s: %w", w.process, w.env.cfg.Nodes[w.home].ID, err)
	}
	if w.onConnect != nil && w.onConnect() != outcomeOk {
		return fmt.Errorf("process %d: setup on node %s failed: see its fail or info entries in the history", w.process, w.nodeID())
	}
	return nil
}

// ensure makes sure the worker has a live connection, reconnecting and
// running onConnect as needed. It returns false if ctx or the workload ended
// first.
func (w *worker) ensure(ctx context.Context) bool {
	for {
		if w.conn != nil && !w.conn.isLost() {
			return true
		}
		if w.conn != nil {
			w.conn = nil
			if !w.pause(ctx) {
				return false
			}
		}
		if !w.reconnect(ctx, w.nextNode()) {
			return false
		}
		if w.onConnect == nil || w.onConnect() != outcomeInfo {
			return true
		}
	}
}

// nextNode picks the node to reconnect to: a random node other than the
// current one, as a load balancer would after the current one failed, or
// the home node with preferHome.
func (w *worker) nextNode() int {
	n := len(w.env.cfg.Nodes)
	if w.preferHome {
		return w.home
	}
	if n == 1 {
		return 0
	}
	return (w.node + 1 + w.network.IntN(n-1)) % n
}

// reconnect dials first, then the following nodes in order, with backoff,
// until a dial succeeds. It returns false if ctx or the workload ended
// first.
func (w *worker) reconnect(ctx context.Context, first int) bool {
	backoff := backoffMin
	for attempt := 0; ; attempt++ {
		node := (first + attempt) % len(w.env.cfg.Nodes)
		err := w.dial(ctx, node)
		if err == nil {
			return true
		}
		if ctx.Err() != nil || w.env.life.Err() != nil {
			return false
		}

		w.log.Warn("connect failed, retrying", "node", w.env.cfg.Nodes[node].ID, "attempt", attempt+1, "backoff", backoff, "error", err)
		if !w.sleep(ctx, backoff/2+randDuration(w.network, backoff/2)) {
			return false
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// pause waits briefly before a reconnect, so that clients dropped together
// do not all dial at the same moment.
func (w *worker) pause(ctx context.Context) bool {
	return w.sleep(ctx, reconnectPause+randDuration(w.network, reconnectPause))
}

// sleep waits for d and returns false if ctx or the workload ended first.
func (w *worker) sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.env.life.Done():
		return false
	}
}

// wait sleeps for d on a live connection. It returns false if ctx or the
// workload ended, or the connection was lost, first.
func (w *worker) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-w.conn.lost():
		return false
	case <-ctx.Done():
		return false
	case <-w.env.life.Done():
		return false
	}
}

// call runs one client operation on the current connection: it records op
// as an invoke, runs fn bounded by OpTimeout, and records the completion
// that fn filled in, as ok, fail (with the JSON-RPC code) or info. After an
// info the connection is abandoned: the worker waits for the disconnect
// entry, or drops the connection if it is still open, so the next
// operation starts on a new connection.
func (w *worker) call(op history.Op, fn func(ctx context.Context, c *client.Client, done *history.Op) error) outcome {
	op = w.invoke(op)
	done := op
	if !w.conn.recordInvoke(op) {
		// The connection ended before the request was sent, so there is
		// nothing to record. The next ensure reconnects.
		<-w.conn.lost()
		return outcomeInfo
	}

	ctx, cancel := context.WithTimeout(w.env.life, w.env.cfg.OpTimeout)
	err := fn(ctx, w.conn.client, &done)
	cancel()
	return w.complete(w.conn, done, err)
}

// invoke returns op as an invoke of this worker on its current connection.
func (w *worker) invoke(op history.Op) history.Op {
	op.Type, op.Process, op.Node, op.Epoch = history.Invoke, w.process, w.nodeID(), w.epoch
	return op
}

// complete records the completion of an operation on cn from its error: ok,
// fail (with the JSON-RPC code) or info, in which case cn is abandoned. It
// is safe to call from any goroutine.
func (w *worker) complete(cn *conn, done history.Op, err error) outcome {
	w.env.completed.Add(1)
	var rpcErr *client.RPCError
	switch {
	case err == nil:
		done.Type = history.Ok
		w.env.rec.Record(done)
		return outcomeOk
	case errors.As(err, &rpcErr) && rpcErr.Code == client.CodePublishUnconfirmed:
		// The node may still deliver the publish, so its outcome is
		// unknown, but the connection still works.
		done.Type, done.Code, done.Error = history.Info, rpcErr.Code, rpcErr.Message
		w.env.rec.Record(done)
		w.log.Warn("publish not confirmed", "channel", done.Channel, "node", done.Node, "error", rpcErr.Message)
		return outcomeInfo
	case errors.As(err, &rpcErr):
		done.Type, done.Code, done.Error = history.Fail, rpcErr.Code, rpcErr.Message
		w.env.rec.Record(done)
		w.log.Warn("operation failed", "f", done.F, "channel", done.Channel, "node", done.Node, "code", rpcErr.Code, "error", rpcErr.Message)
		return outcomeFail
	default:
		done.Type, done.Error = history.Info, err.Error()
		w.env.rec.Record(done)
		w.log.Warn("operation outcome unknown, abandoning the connection", "f", done.F, "channel", done.Channel, "node", done.Node, "epoch", done.Epoch, "error", err)
		w.abandon(cn, err)
		return outcomeInfo
	}
}

// abandon ends the current connection after an info. A connection that
// dropped gets its FDisconnect from the drain goroutine. One that is still
// open, for example after a timeout on a paused node, is closed with FDrop.
func (w *worker) abandon(cn *conn, err error) {
	if w.env.life.Err() != nil {
		// Close is running: it shuts every connection down itself.
		return
	}
	if errors.Is(err, client.ErrDisconnected) {
		<-cn.lost()
		return
	}
	cn.drop()
}

// worst returns the worse of two outcomes.
func worst(a, b outcome) outcome {
	return max(a, b)
}

// dropConn closes the current connection on purpose, recorded as FDrop.
func (w *worker) dropConn() {
	if w.conn != nil {
		w.conn.drop()
	}
}

// silentConn makes the current connection silent, recorded as an FDrop
// whose ok has Error silentError, and waits for silenceTime, by which the
// node must have closed it. Then it closes the connection, and the next
// ensure reconnects as after a drop. If ctx or the workload ends first, the
// connection stays silent until Close.
func (w *worker) silentConn(ctx context.Context) {
	if w.conn == nil || !w.conn.silence() {
		return
	}
	w.log.Info("connection silent", "node", w.nodeID(), "epoch", w.epoch)
	if w.sleep(ctx, w.silenceTime()) {
		w.conn.shutdown()
	}
}

// silenceTime returns the time after a silence by which the node must have
// closed the connection: one ping interval until the next ping, another
// for the pong that never comes, and 1 s for the close.
func (w *worker) silenceTime() time.Duration {
	return 2*w.env.cfg.PingInterval + time.Second
}

// shutdown closes the worker's connection without recording.
func (w *worker) shutdown() {
	if w.conn != nil {
		w.conn.shutdown()
	}
}

// toMembers converts a client roster to the history's form, without infos.
func toMembers(roster []client.Member) []history.Member {
	members := make([]history.Member, 0, len(roster))
	for _, m := range roster {
		hm := history.Member{Member: m.Member, Connections: make([]history.Connection, 0, len(m.Connections))}
		for _, c := range m.Connections {
			hm.Connections = append(hm.Connections, history.Connection{Node: c.Node, Conn: c.Conn})
		}
		members = append(members, hm)
	}
	return members
}

// readMembers records a presence.members read of channel on the current
// connection.
func (w *worker) readMembers(channel string) outcome {
	return w.call(history.Op{F: history.FMembers, Channel: channel}, func(ctx context.Context, c *client.Client, done *history.Op) error {
		roster, err := c.Members(ctx, channel)
		done.Members = toMembers(roster)
		return err
	})
}

// enter registers a call of Setup, Run, Observe or Final, and fails after
// Close.
func (e *env) enter() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("workloads: %w: the workload was closed", client.ErrClosed)
	}
	e.active.Add(1)
	return nil
}

// leave ends a call that enter registered.
func (e *env) leave() {
	e.active.Done()
}

// Close stops every worker, waits for them, and closes every connection
// without recording. Nothing is recorded after it returns.
func (e *env) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()

	e.stop()
	e.active.Wait()

	// No goroutine uses a worker any more, so their connections can be read
	// without a lock.
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Go(w.shutdown)
	}
	wg.Wait()
	return nil
}

// Completed returns the number of client operations completed so far.
func (e *env) Completed() int64 {
	return e.completed.Load()
}

// spawn runs fn(0) to fn(n-1), each in its own goroutine, and waits for
// all of them.
func spawn(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}

// bound returns ctx, also canceled when the workload is closed.
func (e *env) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// randDuration returns a random duration from 0 to d, both included.
func randDuration(r *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(r.Int64N(int64(d) + 1))
}
