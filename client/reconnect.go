package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// supervise runs the reader of each connection in turn. After a drop it
// redials and restores state when Reconnect is on. It closes the inbox when
// no connection will follow, so the deliverer can close the Notifications
// channel.
func (c *Client) supervise(s *session) {
	defer c.stopped.Done()
	defer c.inbox.close()

	for reconnected := false; ; reconnected = true {
		go c.readLoop(s)
		if reconnected {
			c.restore(s)
		}
		<-s.done

		if c.isClosed() || !c.opts.Reconnect {
			return
		}
		s = c.redial(s.urlIndex)
		if s == nil {
			return
		}
	}
}

// redial dials the URLs round robin, starting after previous, with
// exponential backoff and jitter. It returns the new connection, already
// installed as the current one, or nil after Close.
func (c *Client) redial(previous int) *session {
	delay := c.opts.ReconnectMin
	for attempt := 1; ; attempt++ {
		if !c.sleep(jitter(delay)) {
			return nil
		}

		index := (previous + attempt) % len(c.urls)
		s, err := c.dial(c.ctx, index)
		if err == nil {
			return c.install(s, attempt)
		}
		if c.isClosed() {
			return nil
		}

		c.log.Info("reconnect attempt failed", "attempt", attempt, "url", c.urls[index], "error", err)
		delay = min(2*delay, c.opts.ReconnectMax)
	}
}

// install makes s the current connection, unless Close came first.
func (c *Client) install(s *session, attempt int) *session {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = s.ws.Close()
		return nil
	}
	c.cur = s
	c.mu.Unlock()

	c.log.Info("reconnected", "url", s.url, "attempt", attempt)

	return s
}

// sleep waits for d and reports false if Close came first.
func (c *Client) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// jitter returns a random duration in [d/2, d], so that clients dropped by
// the same node do not all redial at the same moment.
func jitter(d time.Duration) time.Duration {
	half := d / 2

	return d - half + rand.N(half+1)
}

// restore subscribes and joins again on a new connection, then emits the
// "reconnected" notification. A request rejected by the server is logged
// and skipped. Any other failure closes the connection, so the supervisor
// redials, and no notification is emitted.
func (c *Client) restore(s *session) {
	subs, joins := c.snapshot()

	for _, channel := range subs {
		err := c.restoreCall(s, "subscribe", channelParams{Channel: channel}, nil)
		if !c.restoreContinues(s, "subscribe", channel, err) {
			return
		}
	}

	rosters := make(map[string][]Member, len(joins))
	for _, params := range joins {
		var result rosterResult
		err := c.restoreCall(s, "presence.join", params, &result)
		if !c.restoreContinues(s, "presence.join", params.Channel, err) {
			return
		}
		if err == nil {
			rosters[params.Channel] = result.Members
		}
	}

	c.enqueue(delivery{
		notification: Notification{Method: MethodReconnected, Received: time.Now(), URL: s.url, Rosters: rosters},
		session:      s,
	})
}

// restoreCall sends one restoring request, bounded by DialTimeout and Close.
func (c *Client) restoreCall(s *session, method string, params, result any) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()

	return c.callOn(ctx, s, method, params, result, nil)
}

// restoreContinues reports whether restore should go on after a request
// that returned err.
func (c *Client) restoreContinues(s *session, method, channel string, err error) bool {
	var rpcErr *RPCError
	switch {
	case err == nil:
		return true
	case errors.As(err, &rpcErr):
		c.log.Warn("server rejected a restore after reconnect", "url", s.url, "method", method, "channel", channel, "error", err)
		return true
	case c.isClosed():
		return false
	default:
		c.log.Warn("restore after reconnect failed, redialing", "url", s.url, "method", method, "channel", channel, "error", err)
		_ = s.ws.Close()
		return false
	}
}

// snapshot returns the subscribed channels and the joins, sorted by channel.
func (c *Client) snapshot() ([]string, []joinParams) {
	c.mu.Lock()
	defer c.mu.Unlock()

	subs := make([]string, 0, len(c.subs))
	for channel := range c.subs {
		subs = append(subs, channel)
	}
	slices.Sort(subs)

	joins := make([]joinParams, 0, len(c.joins))
	for _, params := range c.joins {
		joins = append(joins, params)
	}
	slices.SortFunc(joins, func(a, b joinParams) int { return strings.Compare(a.Channel, b.Channel) })

	return subs, joins
}
