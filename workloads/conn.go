package workloads

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/internal/faultproxy"
	"github.com/wscluster/wscluster/topology"
)

// silentError is the Error of the FDrop ok that ends a connection made
// silent on purpose. Checkers treat the entry as any other drop without
// leave, and the ghosts checker times the node's pong timeout from it.
const silentError = "silent"

// conn is one recorded client connection: epoch Epoch of a process on one
// node. A drain goroutine records everything the connection receives and,
// when the connection ends without drop or shutdown, an FDisconnect event.
type conn struct {
	rec     *history.Recorder
	client  *client.Client
	process int
	epoch   int
	node    string
	log     *slog.Logger
	// proxy carries the connection when it may go silent, and is nil
	// otherwise. The drain goroutine closes it when the connection ends.
	proxy *faultproxy.Proxy

	// done is closed when the drain goroutine has exited, after the
	// connection ended and every notification was recorded.
	done chan struct{}

	// mu guards the flags below, and makes the decision between recording
	// FDisconnect, FDrop or nothing atomic.
	mu sync.Mutex
	// closing is set by drop and shutdown before they close the client, so
	// the drain goroutine does not take our close for a disconnect.
	closing bool
	// quiet is set by shutdown: nothing more is recorded.
	quiet bool
	// ended is set once the drain goroutine recorded FDisconnect.
	ended bool
	// silent is set by silence once the proxy stopped forwarding.
	silent bool
}

// dialConn records an FConnect of process to node as epoch epoch and, when
// it succeeds, starts recording the connection's notifications. The dial is
// bounded by timeout and ctx. With viaProxy the connection goes through a
// TCP proxy of its own on loopback, so that silence can stop it later. A
// failed dial returns the error after its Fail entry is recorded.
func dialConn(ctx context.Context, rec *history.Recorder, process, epoch int, node topology.Node, timeout time.Duration, viaProxy bool, log *slog.Logger) (*conn, error) {
	op := history.Op{Type: history.Invoke, F: history.FConnect, Process: process, Node: node.ID, Epoch: epoch}
	rec.Record(op)
	fail := func(err error) (*conn, error) {
		op.Type = history.Fail
		op.Error = err.Error()
		rec.Record(op)
		return nil, err
	}

	wsURL := node.WSURL
	var proxy *faultproxy.Proxy
	if viaProxy {
		var err error
		if proxy, wsURL, err = proxyTo(node.WSURL); err != nil {
			return fail(err)
		}
	}

	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Reconnect stays off: the worker reconnects itself, so that every new
	// connection is a new epoch in the history.
	// NOTE: without IdleTimeout, a connection to a paused or cut-off node
	// ends only when a request on it times out. An idle subscriber stays
	// on such a node until the fault ends.
	c, err := client.Dial(dialCtx, wsURL, client.Options{DialTimeout: timeout, Logger: log})
	if err != nil {
		if proxy != nil {
			closeProxy(proxy, log)
		}
		return fail(err)
	}
	op.Type = history.Ok
	rec.Record(op)

	cn := &conn{rec: rec, client: c, process: process, epoch: epoch, node: node.ID, log: log, proxy: proxy, done: make(chan struct{})}
	go cn.drain()
	return cn, nil
}

// proxyTo starts a proxy on loopback that forwards to the host and port of
// wsURL, and returns it with wsURL pointed at the proxy.
func proxyTo(wsURL string) (*faultproxy.Proxy, string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, "", fmt.Errorf("%w: node URL %q: %w", ErrInvalidConfig, wsURL, err)
	}
	if u.Port() == "" {
		return nil, "", fmt.Errorf("%w: node URL %q has no port for the proxy to forward to: use ws://host:port/ws", ErrInvalidConfig, wsURL)
	}
	target := net.JoinHostPort(u.Hostname(), u.Port())
	proxy, err := faultproxy.New("127.0.0.1:0", target)
	if err != nil {
		return nil, "", fmt.Errorf("workloads: start a proxy to %s: %w", target, err)
	}
	u.Host = proxy.Addr()
	return proxy, u.String(), nil
}

// closeProxy closes a connection's proxy. An error only means that its
// listener was already gone, so it is logged at debug level.
func closeProxy(p *faultproxy.Proxy, log *slog.Logger) {
	if err := p.Close(); err != nil {
		log.Debug("closing the connection's proxy failed", "proxy", p.Addr(), "error", err)
	}
}

// drain records every notification until the Notifications channel closes,
// then records FDisconnect unless the close was ours.
func (c *conn) drain() {
	defer close(c.done)
	if c.proxy != nil {
		// The connection is over, so its proxy is of no more use.
		defer closeProxy(c.proxy, c.log)
	}

	for n := range c.client.Notifications() {
		c.recordNotification(n)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.quiet {
		return
	}
	c.ended = true
	reason := "connection lost without a close frame"
	if ce := c.client.CloseError(); ce != nil {
		reason = ce.Error()
	}
	c.log.Info("connection lost", "error", reason)
	c.rec.Record(history.Op{Type: history.Event, F: history.FDisconnect, Process: c.process, Node: c.node, Epoch: c.epoch, Error: reason})
}

// recordNotification records a message or presence event, stamped with the
// time the client's reader decoded it rather than the time it reached this
// goroutine.
func (c *conn) recordNotification(n client.Notification) {
	op := history.Op{Type: history.Event, Process: c.process, Node: c.node, Epoch: c.epoch}
	switch {
	case n.Message != nil:
		op.F = history.FMessage
		op.Channel = n.Message.Channel
		op.MsgID = n.Message.MsgID
		op.Value = n.Message.Data
		op.QoS = n.Message.QoS
		op.Redelivered = n.Message.Redelivered
	case n.Presence != nil && n.Method == client.MethodPresenceJoin:
		op.F = history.FPresenceJoin
		op.Channel = n.Presence.Channel
		op.Member = n.Presence.Member
		op.EventNode = n.Presence.Node
	case n.Presence != nil && n.Method == client.MethodPresenceLeave:
		op.F = history.FPresenceLeave
		op.Channel = n.Presence.Channel
		op.Member = n.Presence.Member
	default:
		c.log.Warn("ignored notification of unknown method", "method", n.Method)
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.quiet {
		return
	}
	// Record treats Time 0 as "stamp now", so the earliest time is 1.
	op.Time = max(c.rec.Now()-int64(time.Since(n.Received)), 1)
	c.rec.Record(op)
}

// recordInvoke records op, the invoke of an operation on this connection,
// unless the connection has already ended or is closing. The check and the
// record are atomic with the drain goroutine's FDisconnect, so no operation
// of an epoch follows its end in the history.
func (c *conn) recordInvoke(op history.Op) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.closing {
		return false
	}
	c.rec.Record(op)
	return true
}

// lost returns a channel that is closed when the connection has ended and
// its last entry is recorded.
func (c *conn) lost() <-chan struct{} {
	return c.done
}

// isLost reports whether the connection has ended.
func (c *conn) isLost() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// drop closes the connection on purpose, recorded as FDrop invoke and ok,
// unless it already ended or is being closed, and waits until the drain
// goroutine has exited. It reports whether it recorded an FDrop.
func (c *conn) drop() bool {
	c.mu.Lock()
	if c.ended || c.closing {
		c.mu.Unlock()
		<-c.done
		return false
	}
	c.closing = true
	c.mu.Unlock()

	op := history.Op{Type: history.Invoke, F: history.FDrop, Process: c.process, Node: c.node, Epoch: c.epoch}
	c.rec.Record(op)
	if err := c.client.Close(); err != nil {
		c.log.Debug("no reply to the close frame on drop", "error", err)
	}
	<-c.done
	op.Type = history.Ok
	c.rec.Record(op)
	return true
}

// silence makes the connection silent on purpose: its proxy stops
// forwarding in both directions while every socket stays open, like a
// client whose network went away. It records an FDrop invoke, and an FDrop
// ok with Error silentError once the proxy is silent, and nothing for the
// connection after that. The node closes its side after its pong timeout;
// shutdown closes this side. It reports whether it recorded the FDrop,
// which it does not for a connection without proxy, or one that already
// ended or is closing.
func (c *conn) silence() bool {
	c.mu.Lock()
	if c.proxy == nil || c.ended || c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.mu.Unlock()

	op := history.Op{Type: history.Invoke, F: history.FDrop, Process: c.process, Node: c.node, Epoch: c.epoch}
	c.rec.Record(op)
	c.proxy.Blackhole()

	// Bytes that the proxy read before the blackhole may still arrive.
	// They belong to a connection that has ended in the history, so they
	// are not recorded.
	c.mu.Lock()
	c.quiet = true
	c.silent = true
	c.mu.Unlock()
	op.Type, op.Error = history.Ok, silentError
	c.rec.Record(op)
	return true
}

// shutdown closes the connection without recording anything, and returns
// once the drain goroutine records nothing more. It is safe to call twice
// and after drop.
func (c *conn) shutdown() {
	c.mu.Lock()
	c.quiet = true
	c.closing = true
	silent := c.silent
	c.mu.Unlock()

	// A silent connection would wait in vain for the answer to its close
	// frame. Closing the proxy ends it at once.
	if silent {
		closeProxy(c.proxy, c.log)
	}
	if err := c.client.Close(); err != nil && !errors.Is(err, client.ErrClosed) {
		c.log.Debug("no reply to the close frame on shutdown", "error", err)
	}
	<-c.done
}
