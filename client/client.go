package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// closeTimeout bounds how long Close waits for the server to reply to the
// close frame before it closes the network connection.
const closeTimeout = time.Second

// Client is a connection to a wscluster node. All methods are safe for
// concurrent use. Create one with [Dial] and release it with [Client.Close].
type Client struct {
	opts Options
	urls []string // the dial URL followed by Options.FallbackURLs
	log  *slog.Logger

	nextID atomic.Uint64

	// inflight counts requests waiting for a response, and requestStarted
	// wakes the reader when one starts, so that the reader stops applying
	// backpressure and reads on until the response arrives.
	inflight       atomic.Int64
	requestStarted chan struct{}

	inbox         *inbox
	notifications chan Notification

	// ctx is canceled by Close. It stops redials, restores and the
	// goroutines below.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cur      *session // nil while reconnecting and after a final drop
	closed   bool
	closeErr *websocket.CloseError
	subs     map[string]struct{}   // channels to subscribe again after a reconnect
	joins    map[string]joinParams // joins to repeat after a reconnect, by channel

	closeOnce sync.Once
	stopped   sync.WaitGroup // the supervisor and deliverer goroutines
}

// Dial connects to the node at url, a ws:// or wss:// URL of its /ws
// endpoint, and starts the reader. ctx bounds only the dial, together with
// Options.DialTimeout. A server that rejects the upgrade yields an error
// that wraps a *HandshakeError.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	c := &Client{
		opts:           opts,
		urls:           append([]string{url}, opts.FallbackURLs...),
		log:            opts.Logger,
		requestStarted: make(chan struct{}, 1),
		inbox:          newInbox(),
		notifications:  make(chan Notification, opts.NotifyBuffer),
		subs:           make(map[string]struct{}),
		joins:          make(map[string]joinParams),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	s, err := c.dial(ctx, 0)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.cur = s

	c.stopped.Add(2)
	go c.supervise(s)
	go c.deliver()

	return c, nil
}

// dial opens a connection to c.urls[index].
func (c *Client) dial(ctx context.Context, index int) (*session, error) {
	url := c.urls[index]
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()

	dialer := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: c.opts.DialTimeout,
		Subprotocols:     []string{Subprotocol},
	}
	ws, resp, err := dialer.DialContext(ctx, url, c.upgradeHeader())
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			return nil, fmt.Errorf("connect to %s: %w", url, newHandshakeError(url, resp))
		}
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}

	s := newSession(ws, url, index)
	c.installPingHandler(s)

	return s, nil
}

// upgradeHeader returns Options.Header plus the Authorization header.
func (c *Client) upgradeHeader() http.Header {
	header := c.opts.Header.Clone()
	if header == nil {
		header = make(http.Header)
	}
	if c.opts.Token != "" {
		header.Set("Authorization", "Bearer "+c.opts.Token)
	}

	return header
}

// installPingHandler keeps gorilla's default ping handler, which replies
// with a pong, and also extends the read deadline when IdleTimeout is set,
// because a ping proves that the connection is alive.
func (c *Client) installPingHandler(s *session) {
	if c.opts.IdleTimeout <= 0 {
		return
	}
	answerPing := s.ws.PingHandler()
	s.ws.SetPingHandler(func(appData string) error {
		_ = s.ws.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
		return answerPing(appData)
	})
}

// session returns the current connection, or ErrClosed or ErrDisconnected.
func (c *Client) session() (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.closed {
		return nil, ErrClosed
	}
	if c.cur == nil {
		return nil, fmt.Errorf("%w: no connection", ErrDisconnected)
	}

	return c.cur, nil
}

// isClosed reports whether Close has been called.
func (c *Client) isClosed() bool {
	return c.ctx.Err() != nil
}

// Notifications returns the channel of server notifications and
// "reconnected" events. Its capacity is Options.NotifyBuffer.
//
// Backpressure: when the channel is full, the reader stops reading from the
// connection, so the server detects a slow consumer and may close the
// connection with 4008. While a request waits for its response, the reader
// does not stop. It keeps reading so the response can arrive and queues the
// notifications in memory. Close always unblocks the reader.
//
// The channel is closed by Close, and when the connection drops with
// Reconnect off. Notifications still queued when Close is called may be
// discarded.
func (c *Client) Notifications() <-chan Notification {
	return c.notifications
}

// CloseError returns the close frame that the server sent last, such as code
// 1001 when a node shuts down or 4008 for a slow consumer, or nil if it sent
// none. The server's reply to Close is recorded too, usually with code 1000.
func (c *Client) CloseError() *websocket.CloseError {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.closeErr
}

// Close sends a normal close frame (1000), waits briefly for the server's
// answer, closes the connection and stops every goroutine of the client.
// Requests in flight fail with ErrClosed and the Notifications channel is
// closed. Close is safe to call more than once. Later calls return nil.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		s := c.cur
		c.mu.Unlock()

		c.cancel()
		if s != nil {
			err = s.sendClose(closeTimeout)
		}
		c.stopped.Wait()
	})

	return err
}

// joinParams are the params of presence.join.
type joinParams struct {
	Channel string          `json:"channel"`
	Member  string          `json:"member"`
	Info    json.RawMessage `json:"info,omitempty"`
}
