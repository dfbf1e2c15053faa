package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// envelope is any JSON-RPC object that the server sends: a response or a
// notification.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
}

// readLoop reads frames from s until the connection fails or closes, then
// ends the session.
func (c *Client) readLoop(s *session) {
	err := c.readFrames(s)
	c.endSession(s, err)
}

// readFrames dispatches every frame and returns the read error that stops
// it.
func (c *Client) readFrames(s *session) error {
	for {
		// The deadline is set before each read, so time spent waiting for
		// room in the Notifications channel does not count as idle.
		if c.opts.IdleTimeout > 0 {
			_ = s.ws.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
		}
		messageType, data, err := s.ws.ReadMessage()
		if err != nil {
			return err
		}
		if messageType != websocket.TextMessage {
			c.log.Warn("ignored non-text frame from server", "url", s.url, "type", messageType)
			continue
		}
		c.dispatchFrame(s, data)
	}
}

// dispatchFrame handles one text frame, which holds one JSON-RPC object or
// a batch of them.
func (c *Client) dispatchFrame(s *session, data []byte) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		c.dispatchObject(s, data)
		return
	}

	var batch []json.RawMessage
	if err := json.Unmarshal(data, &batch); err != nil {
		c.log.Warn("ignored invalid JSON batch from server", "url", s.url, "error", err)
		return
	}
	for _, item := range batch {
		c.dispatchObject(s, item)
	}
}

// dispatchObject routes one JSON-RPC object to its waiting call or to the
// Notifications channel.
func (c *Client) dispatchObject(s *session, data []byte) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		c.log.Warn("ignored invalid JSON from server", "url", s.url, "error", err)
		return
	}
	received := time.Now()

	if env.Method != "" {
		c.handleNotification(s, env, received)
		return
	}
	c.handleResponse(s, env, data)
}

// handleResponse completes the call that the response's id belongs to. The
// client sends only unsigned integer ids, so any other id is unmatched.
func (c *Client) handleResponse(s *session, env envelope, data []byte) {
	id, err := strconv.ParseUint(string(env.ID), 10, 64)
	if err == nil && s.complete(id, env.Result, env.Error) {
		return
	}

	if c.opts.OnUnmatchedResponse != nil {
		c.opts.OnUnmatchedResponse(data)
		return
	}
	c.log.Debug("dropped response with unknown id", "url", s.url, "id", string(env.ID))
}

// handleNotification decodes a notification's params and queues it.
func (c *Client) handleNotification(s *session, env envelope, received time.Time) {
	n := Notification{Method: env.Method, Received: received, Params: env.Params}

	var err error
	switch env.Method {
	case MethodMessage:
		n.Message = new(Message)
		err = json.Unmarshal(env.Params, n.Message)
	case MethodPresenceJoin, MethodPresenceLeave:
		n.Presence = new(PresenceEvent)
		err = json.Unmarshal(env.Params, n.Presence)
	}
	if err != nil {
		c.log.Warn("ignored notification with invalid params", "url", s.url, "method", env.Method, "error", err)
		return
	}

	c.enqueue(delivery{notification: n, session: s})
}

// enqueue hands a notification to the deliverer, then applies backpressure.
// After Close, notifications are discarded because the deliverer has
// stopped.
func (c *Client) enqueue(d delivery) {
	if c.isClosed() {
		return
	}
	c.inbox.push(d)
	c.waitForRoom()
}

// waitForRoom blocks while the inbox holds a notification that the
// deliverer has not taken, which means the Notifications channel is full.
// It returns while a request waits for its response, because the response
// may be in the frames that follow, and after Close.
func (c *Client) waitForRoom() {
	for c.inbox.len() > 0 && c.inflight.Load() == 0 {
		select {
		case <-c.inbox.taken:
		case <-c.requestStarted:
		case <-c.ctx.Done():
			return
		}
	}
}

// endSession records the server's close frame, fails the session's pending
// calls and detaches the session from the client.
func (c *Client) endSession(s *session, readErr error) {
	var closeErr *websocket.CloseError
	closed := c.isClosed()

	// gorilla/websocket reports a connection lost without a close frame as
	// code 1006, which RFC 6455 forbids in a frame, so it is not recorded.
	c.mu.Lock()
	if errors.As(readErr, &closeErr) && closeErr.Code != websocket.CloseAbnormalClosure {
		c.closeErr = closeErr
	}
	if c.cur == s {
		c.cur = nil
	}
	c.mu.Unlock()

	_ = s.ws.Close()
	if closed {
		s.end(ErrClosed)
	} else {
		c.log.Warn("connection dropped", "url", s.url, "error", readErr)
		s.end(fmt.Errorf("%w: %w", ErrDisconnected, readErr))
	}
	close(s.done)
}
