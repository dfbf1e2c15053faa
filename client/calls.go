package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// request is a JSON-RPC 2.0 request, or a notification when ID is nil.
type request struct {
	JSONRPC string  `json:"jsonrpc"`
	ID      *uint64 `json:"id,omitempty"`
	Method  string  `json:"method"`
	Params  any     `json:"params,omitempty"`
}

type channelParams struct {
	Channel string `json:"channel"`
}

type publishParams struct {
	Channel string `json:"channel"`
	Data    any    `json:"data"`
	QoS     int    `json:"qos"`
}

type ackParams struct {
	MsgID string `json:"msg_id"`
}

type publishResult struct {
	MsgID string `json:"msg_id"`
}

type rosterResult struct {
	Channel string   `json:"channel"`
	Members []Member `json:"members"`
}

// Call sends a JSON-RPC request and waits for its response. params is
// marshaled as is and omitted when nil, so it may be anything, including
// values the server rejects. result, if not nil, receives the decoded
// result. A JSON-RPC error is returned as *RPCError. Call returns ctx's error
// when ctx ends first, and an error wrapping ErrDisconnected when the
// connection drops first.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	s, err := c.session()
	if err != nil {
		return err
	}

	return c.callOn(ctx, s, method, params, result, nil)
}

// callRecording sends a request on the current connection and runs
// onSuccess in the reader goroutine when a result arrives.
func (c *Client) callRecording(ctx context.Context, method string, params, result any, onSuccess func()) error {
	s, err := c.session()
	if err != nil {
		return err
	}

	return c.callOn(ctx, s, method, params, result, onSuccess)
}

// callOn sends a request on a given connection. The restore after a
// reconnect uses it to stay on the connection it restores. onSuccess, if
// set, runs in the reader goroutine when a result arrives.
func (c *Client) callOn(ctx context.Context, s *session, method string, params, result any, onSuccess func()) error {
	id, pending, err := c.send(s, method, params, onSuccess)
	if err != nil {
		return err
	}
	return c.await(ctx, s, id, pending, method, result)
}

// send writes a request on s and returns the call that its response
// completes. Every call that send returns must be passed to await once.
func (c *Client) send(s *session, method string, params any, onSuccess func()) (uint64, *call, error) {
	id := c.nextID.Add(1)
	data, err := json.Marshal(request{JSONRPC: "2.0", ID: &id, Method: method, Params: params})
	if err != nil {
		return 0, nil, fmt.Errorf("encode %s request: %w", method, err)
	}

	// The reader must know that a response is awaited before the request
	// leaves, or it could hold back the frames that contain the response.
	c.inflight.Add(1)
	signal(c.requestStarted)

	pending, err := s.register(id, onSuccess)
	if err != nil {
		c.inflight.Add(-1)
		return 0, nil, err
	}
	if err := s.write(websocket.TextMessage, data); err != nil {
		s.unregister(id)
		c.inflight.Add(-1)
		return 0, nil, fmt.Errorf("send %s request: %w", method, err)
	}
	return id, pending, nil
}

// await waits for the response of a call that send returned.
func (c *Client) await(ctx context.Context, s *session, id uint64, pending *call, method string, result any) error {
	defer c.inflight.Add(-1)
	select {
	case <-pending.done:
	case <-ctx.Done():
		s.unregister(id)
		return fmt.Errorf("wait for %s response: %w", method, ctx.Err())
	}

	return decodeResponse(method, pending, result)
}

// decodeResponse turns a completed call into the caller's result or error.
func decodeResponse(method string, pending *call, result any) error {
	if pending.err != nil {
		return pending.err
	}
	if pending.rpcErr != nil {
		return pending.rpcErr
	}
	if result == nil || len(pending.result) == 0 {
		return nil
	}
	if err := json.Unmarshal(pending.result, result); err != nil {
		return fmt.Errorf("decode %s result %s: %w", method, pending.result, err)
	}

	return nil
}

// Notify sends a JSON-RPC notification, a request without id that gets no
// response. params is marshaled as is and omitted when nil.
func (c *Client) Notify(method string, params any) error {
	s, err := c.session()
	if err != nil {
		return err
	}

	return notifyOn(s, method, params)
}

// notifyOn sends a notification on a given connection.
func notifyOn(s *session, method string, params any) error {
	data, err := json.Marshal(request{JSONRPC: "2.0", Method: method, Params: params})
	if err != nil {
		return fmt.Errorf("encode %s notification: %w", method, err)
	}
	if err := s.write(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("send %s notification: %w", method, err)
	}

	return nil
}

// WriteRaw sends one frame of any type, such as websocket.BinaryMessage or
// text that is not JSON, to test how the server handles bad input. A reply
// to it has no matching request, see Options.OnUnmatchedResponse. Avoid
// numeric ids in raw requests, because the client's own requests use
// increasing integers and a reply could be taken for theirs.
func (c *Client) WriteRaw(messageType int, data []byte) error {
	s, err := c.session()
	if err != nil {
		return err
	}

	return s.write(messageType, data)
}

// Subscribe subscribes to channel. When it returns nil, every message that
// any node receives from then on reaches this client. With Reconnect, the
// subscription is restored after a reconnect.
func (c *Client) Subscribe(ctx context.Context, channel string) error {
	record := func() {
		c.mu.Lock()
		c.subs[channel] = struct{}{}
		c.mu.Unlock()
	}

	return c.callRecording(ctx, "subscribe", channelParams{Channel: channel}, nil, record)
}

// Unsubscribe unsubscribes from channel. It succeeds also when the client
// was not subscribed. The channel is no longer restored after a reconnect,
// even if the request fails.
func (c *Client) Unsubscribe(ctx context.Context, channel string) error {
	c.mu.Lock()
	delete(c.subs, channel)
	c.mu.Unlock()

	return c.Call(ctx, "unsubscribe", channelParams{Channel: channel}, nil)
}

// Publish publishes data to channel with QoS 0 or 1 and returns the message
// id. data is marshaled with encoding/json, so a json.RawMessage is sent as
// is, apart from insignificant whitespace, and nil is sent as null.
func (c *Client) Publish(ctx context.Context, channel string, data any, qos int) (string, error) {
	var result publishResult
	params := publishParams{Channel: channel, Data: data, QoS: qos}
	if err := c.Call(ctx, "publish", params, &result); err != nil {
		return "", err
	}

	return result.MsgID, nil
}

// PendingPublish is a publish that PublishAsync sent, whose result Wait
// reads.
type PendingPublish struct {
	client  *Client
	session *session
	id      uint64
	call    *call
	waited  atomic.Bool
}

// PublishAsync sends a publish like Publish but returns once the request is
// written, without waiting for the result. The publishes of one goroutine
// leave in the order of the calls, and the server keeps that order for the
// connection's messages. Call Wait once on every PendingPublish: until then
// the client keeps reading frames for the result.
func (c *Client) PublishAsync(channel string, data any, qos int) (*PendingPublish, error) {
	s, err := c.session()
	if err != nil {
		return nil, err
	}
	params := publishParams{Channel: channel, Data: data, QoS: qos}
	id, pending, err := c.send(s, "publish", params, nil)
	if err != nil {
		return nil, err
	}
	return &PendingPublish{client: c, session: s, id: id, call: pending}, nil
}

// Wait waits for the publish's result and returns its message id. It
// returns ctx's error when ctx ends first, and an error wrapping
// ErrDisconnected when the connection drops first.
func (p *PendingPublish) Wait(ctx context.Context) (string, error) {
	if p.waited.Swap(true) {
		return "", ErrWaitedTwice
	}
	var result publishResult
	if err := p.client.await(ctx, p.session, p.id, p.call, "publish", &result); err != nil {
		return "", err
	}
	return result.MsgID, nil
}

// Join joins channel's presence as member and returns the cluster-wide
// roster, which includes this client. info is marshaled with encoding/json
// and omitted when nil, which the server treats as {}. With Reconnect, the
// join is repeated with the same member and info after a reconnect.
func (c *Client) Join(ctx context.Context, channel, member string, info any) ([]Member, error) {
	params := joinParams{Channel: channel, Member: member}
	if info != nil {
		raw, err := json.Marshal(info)
		if err != nil {
			return nil, fmt.Errorf("encode info of member %q: %w", member, err)
		}
		params.Info = raw
	}

	record := func() {
		c.mu.Lock()
		c.joins[channel] = params
		c.mu.Unlock()
	}

	var result rosterResult
	if err := c.callRecording(ctx, "presence.join", params, &result, record); err != nil {
		return nil, err
	}

	return result.Members, nil
}

// Leave leaves channel's presence. It succeeds also when the client had not
// joined. The join is no longer repeated after a reconnect, even if the
// request fails.
func (c *Client) Leave(ctx context.Context, channel string) error {
	c.mu.Lock()
	delete(c.joins, channel)
	c.mu.Unlock()

	return c.Call(ctx, "presence.leave", channelParams{Channel: channel}, nil)
}

// Members returns the cluster-wide roster of channel, sorted by member id.
func (c *Client) Members(ctx context.Context, channel string) ([]Member, error) {
	var result rosterResult
	if err := c.Call(ctx, "presence.members", channelParams{Channel: channel}, &result); err != nil {
		return nil, err
	}

	return result.Members, nil
}

// Ack confirms a QoS 1 message, so the server stops redelivering it. Only
// needed with Options.ManualAck. The ack goes to the current connection.
// After a reconnect, acks of messages that arrived on the old connection
// reach a connection that did not deliver them.
func (c *Client) Ack(msgID string) error {
	return c.Notify("ack", ackParams{MsgID: msgID})
}

// ackOn acks a message on the connection that delivered it. A connection
// that has ended cannot carry the ack, so it is skipped.
func (c *Client) ackOn(s *session, msgID string) {
	if s.endError() != nil {
		return
	}
	if err := notifyOn(s, "ack", ackParams{MsgID: msgID}); err != nil {
		c.log.Debug("failed to send ack", "url", s.url, "msg_id", msgID, "error", err)
	}
}
