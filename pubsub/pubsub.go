// Package pubsub is the publish/subscribe protocol: the subscribe,
// unsubscribe, publish and ack methods and the message notification.
//
// A publish is encoded once into a WebSocket frame, and the same bytes are
// queued to every subscriber. Publishes reach other nodes through a
// backplane.Backplane; messages from other nodes come back through Deliver.
package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/metrics"
	"github.com/wscluster/wscluster/rpc"
	"github.com/wscluster/wscluster/wsconn"
)

// Config configures a PubSub. Zero fields take the documented defaults.
type Config struct {
	// Backplane carries publishes to other nodes. Required.
	Backplane backplane.Backplane
	// Metrics receives counters. Required.
	Metrics *metrics.Metrics
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
	// MaxSubscriptions is the number of channels one connection may
	// subscribe to; one more is error 1003. Default 1024.
	MaxSubscriptions int
	// QoS1RetryInterval is the time between redeliveries of an unacked
	// QoS 1 message. Default 2s.
	QoS1RetryInterval time.Duration
	// QoS1RetryLimit is the number of redeliveries before an unacked QoS 1
	// message is dropped and counted. Default 5; 0 means none.
	QoS1RetryLimit int
	// MaxUnacked is the number of unacked QoS 1 messages at which a
	// connection is closed as a slow consumer. Default 1000.
	MaxUnacked int
	// SubscribeTimeout bounds the wait for cluster-wide delivery in
	// subscribe. Default 5s.
	SubscribeTimeout time.Duration
	// PublishTimeout bounds the hand-over of a publish to the backplane.
	// Default 5s.
	PublishTimeout time.Duration
	// MaxPublishesInFlight is the number of one connection's publishes
	// that may wait for the backplane at once. The connection's next
	// request is read only when one of them has its result. Default 64.
	MaxPublishesInFlight int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 1024
	}
	if c.QoS1RetryInterval <= 0 {
		c.QoS1RetryInterval = 2 * time.Second
	}
	if c.QoS1RetryLimit < 0 {
		c.QoS1RetryLimit = 0
	}
	if c.MaxUnacked <= 0 {
		c.MaxUnacked = 1000
	}
	if c.SubscribeTimeout <= 0 {
		c.SubscribeTimeout = 5 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxPublishesInFlight <= 0 {
		c.MaxPublishesInFlight = 64
	}
}

// PubSub implements the publish/subscribe methods for the connections of one
// node. It implements backplane.MessageHandler.
type PubSub struct {
	cfg Config

	mu       sync.RWMutex
	channels map[string]map[*subscriber]struct{}
	conns    map[*wsconn.Conn]*subscriber

	inFlight inFlight
}

// New returns a PubSub. It panics when cfg lacks a Backplane or Metrics,
// because that is a programming error.
func New(cfg Config) *PubSub {
	if cfg.Backplane == nil || cfg.Metrics == nil {
		panic("pubsub: Config.Backplane and Config.Metrics are required")
	}
	cfg.setDefaults()
	return &PubSub{
		cfg:      cfg,
		channels: make(map[string]map[*subscriber]struct{}),
		conns:    make(map[*wsconn.Conn]*subscriber),
		inFlight: inFlight{limit: cfg.MaxPublishesInFlight, slots: make(map[*wsconn.Conn]chan struct{})},
	}
}

// Methods returns the JSON-RPC methods this protocol serves.
func (p *PubSub) Methods() []string {
	return []string{"subscribe", "unsubscribe", "publish", "ack"}
}

// Handle serves one request of c.
func (p *PubSub) Handle(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	switch req.Method {
	case "subscribe":
		p.subscribe(c, req, reply)
	case "unsubscribe":
		p.unsubscribe(c, req, reply)
	case "publish":
		p.publish(c, req, reply)
	case "ack":
		p.ack(c, req, reply)
	default:
		reply(nil, rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q", req.Method))
	}
}

type channelParams struct {
	Channel *string `json:"channel"`
}

type channelResult struct {
	Channel string `json:"channel"`
}

// decodeChannel reads {"channel"} params and validates the name.
func decodeChannel(params json.RawMessage) (string, *rpc.Error) {
	var p channelParams
	if err := rpc.UnmarshalParams(params, &p); err != nil {
		return "", err
	}
	if p.Channel == nil {
		return "", rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "channel"`)
	}
	if err := rpc.CheckChannel(*p.Channel); err != nil {
		return "", err
	}
	return *p.Channel, nil
}

// authorize returns error 1006 unless c's token allows channel.
func authorize(c *wsconn.Conn, channel string) *rpc.Error {
	if c.Identity().MayUseChannel(channel) {
		return nil
	}
	return rpc.Errorf(rpc.CodeNotAuthorized, "not authorized: the token's channels claim does not allow channel %q", channel)
}

func (p *PubSub) subscribe(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	channel, perr := decodeChannel(req.Params)
	if perr == nil {
		perr = authorize(c, channel)
	}
	if perr != nil {
		reply(nil, perr)
		return
	}
	added, perr := p.addSubscription(c, channel)
	if perr != nil {
		reply(nil, perr)
		return
	}

	// The local subscription is in place first, so nothing that arrives
	// while the backplane sets up delivery is missed.
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.SubscribeTimeout)
	defer cancel()
	if err := p.cfg.Backplane.Subscribe(ctx, channel); err != nil {
		if added {
			p.removeSubscription(c, channel)
		}
		c.Logger().Warn("subscribe failed in the backplane", "channel", channel, "err", err)
		reply(nil, rpc.Errorf(rpc.CodeUnavailable, "backplane unavailable: subscribe to %q did not take effect, try again", channel))
		return
	}
	reply(channelResult{Channel: channel}, nil)
}

// addSubscription adds channel to c's subscriptions. It reports false when c
// was already subscribed, which is not an error.
func (p *PubSub) addSubscription(c *wsconn.Conn, channel string) (bool, *rpc.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.subscriberLocked(c)
	if _, ok := s.channels[channel]; ok {
		return false, nil
	}
	if len(s.channels) >= p.cfg.MaxSubscriptions {
		return false, rpc.Errorf(rpc.CodeTooManySubscribers,
			"too many subscriptions: this connection has %d, the limit is %d; unsubscribe first or open another connection",
			len(s.channels), p.cfg.MaxSubscriptions)
	}
	s.channels[channel] = struct{}{}
	subs := p.channels[channel]
	if subs == nil {
		subs = make(map[*subscriber]struct{})
		p.channels[channel] = subs
	}
	subs[s] = struct{}{}
	p.cfg.Metrics.Subscriptions.Inc()
	return true, nil
}

func (p *PubSub) subscriberLocked(c *wsconn.Conn) *subscriber {
	s := p.conns[c]
	if s == nil {
		s = &subscriber{conn: c, channels: make(map[string]struct{}), ps: p}
		p.conns[c] = s
	}
	return s
}

func (p *PubSub) unsubscribe(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	channel, perr := decodeChannel(req.Params)
	if perr != nil {
		reply(nil, perr)
		return
	}
	p.removeSubscription(c, channel)
	reply(channelResult{Channel: channel}, nil)
}

// removeSubscription removes one subscription. The backplane hears of the
// last local subscriber leaving under the lock, so that a concurrent
// subscribe's Backplane.Subscribe always comes after it.
func (p *PubSub) removeSubscription(c *wsconn.Conn, channel string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.conns[c]
	if s == nil {
		return
	}
	if _, ok := s.channels[channel]; !ok {
		return
	}
	delete(s.channels, channel)
	p.dropFromChannelLocked(s, channel)
}

func (p *PubSub) dropFromChannelLocked(s *subscriber, channel string) {
	subs := p.channels[channel]
	delete(subs, s)
	p.cfg.Metrics.Subscriptions.Dec()
	if len(subs) == 0 {
		delete(p.channels, channel)
		p.cfg.Backplane.Unsubscribe(channel)
	}
}

// Disconnected removes every subscription of c and drops its unacked
// QoS 1 messages.
func (p *PubSub) Disconnected(c *wsconn.Conn) {
	p.mu.Lock()
	s := p.conns[c]
	delete(p.conns, c)
	if s != nil {
		for channel := range s.channels {
			p.dropFromChannelLocked(s, channel)
		}
	}
	p.mu.Unlock()
	p.inFlight.forget(c)
	if s != nil {
		s.stop()
	}
}

type publishParams struct {
	Channel *string         `json:"channel"`
	Data    json.RawMessage `json:"data"`
	QoS     json.RawMessage `json:"qos"`
}

type publishResult struct {
	MsgID string `json:"msg_id"`
}

func (p *PubSub) publish(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	msg, perr := DecodePublish(req.Params)
	if perr == nil {
		perr = authorize(c, msg.Channel)
	}
	if perr != nil {
		reply(nil, perr)
		return
	}
	answer := func(msgID string, err error) {
		reply(publishAnswer(msgID, err))
	}

	// The responses of a batch go out together, so a publish in a batch
	// gets its result before Handle returns.
	if c.SendsHeld() {
		answer(p.Publish(context.Background(), msg.Channel, msg.Data, msg.QoS))
		return
	}

	// Otherwise the reader goes on while the backplane sequences the
	// message, so that a node sends many publishes to its peers and its
	// subscribers together.
	release := p.inFlight.acquire(c)
	p.publishAsync(context.Background(), msg.Channel, msg.Data, msg.QoS, func(msgID string, err error) {
		release()
		answer(msgID, err)
	})
}

// DecodePublish validates publish params {"channel", "data", "qos"?} and
// returns them as a message without an id. The server's HTTP publish API
// shares it, so both paths accept exactly the same input.
func DecodePublish(params json.RawMessage) (backplane.Message, *rpc.Error) {
	var p publishParams
	if err := rpc.UnmarshalParams(params, &p); err != nil {
		return backplane.Message{}, err
	}
	if p.Channel == nil {
		return backplane.Message{}, rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "channel"`)
	}
	if err := rpc.CheckChannel(*p.Channel); err != nil {
		return backplane.Message{}, err
	}
	if p.Data == nil {
		return backplane.Message{}, rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "data" (any JSON value, null included)`)
	}
	qos := 0
	if p.QoS != nil {
		switch string(p.QoS) {
		case "0":
		case "1":
			qos = 1
		default:
			return backplane.Message{}, rpc.Errorf(rpc.CodeInvalidParams, `invalid params: "qos" must be 0 or 1, got %.20s`, p.QoS)
		}
	}
	return backplane.Message{Channel: *p.Channel, Data: p.Data, QoS: qos}, nil
}

// Publish publishes data on channel as if a client had sent it, and returns
// the msg_id. Server-side APIs use it. The channel must be valid and data
// valid JSON. It returns an error wrapping backplane.ErrUnavailable when the
// backplane did not take the message, and then it was delivered nowhere,
// and one wrapping backplane.ErrUnconfirmed, with the msg_id, when the
// backplane did not confirm it, and then it may be delivered.
func (p *PubSub) Publish(ctx context.Context, channel string, data json.RawMessage, qos int) (string, error) {
	type outcome struct {
		msgID string
		err   error
	}
	result := make(chan outcome, 1)
	p.publishAsync(ctx, channel, data, qos, func(msgID string, err error) { result <- outcome{msgID, err} })
	r := <-result
	return r.msgID, r.err
}

// publishAsync hands a publish to the backplane and calls done, exactly
// once, when the backplane took or rejected it. A message that was taken is
// delivered to this node's subscribers before done, so that on every node
// a publisher's messages keep their order.
func (p *PubSub) publishAsync(ctx context.Context, channel string, data json.RawMessage, qos int, done func(string, error)) {
	msg := backplane.Message{
		ID:      p.cfg.Backplane.NewMessageID(),
		Channel: channel,
		Data:    data,
		QoS:     qos,
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	finish := func(err error) {
		cancel()
		unconfirmed := errors.Is(err, backplane.ErrUnconfirmed)
		if err != nil && !unconfirmed {
			done("", p.rejected(msg, err))
			return
		}

		// A message the backplane did not confirm may reach other nodes,
		// so this node delivers it too.
		if !p.cfg.Backplane.DeliversOwnPublishes() {
			p.deliver(msg, "client")
		}
		if unconfirmed {
			p.cfg.Logger.Warn("publish not confirmed by the backplane; it may still reach other nodes", "channel", msg.Channel, "msg_id", msg.ID, "err", err)
		}
		done(msg.ID, err)
	}

	// The backplane goes first: when it rejects the message, nothing may
	// have been delivered, not even locally.
	if async, ok := p.cfg.Backplane.(backplane.AsyncPublisher); ok {
		async.PublishAsync(ctx, msg, finish)
		return
	}
	finish(p.cfg.Backplane.Publish(ctx, msg))
}

// publishAnswer returns the result or the error of a publish: 1005 when the
// backplane did not take it, 1007 with the msg_id when it did not confirm
// it.
func publishAnswer(msgID string, err error) (any, *rpc.Error) {
	switch {
	case err == nil:
		return publishResult{MsgID: msgID}, nil
	case errors.Is(err, backplane.ErrUnconfirmed):
		e := rpc.Errorf(rpc.CodeUnconfirmed,
			"backplane did not confirm the publish in time: it may still be delivered, so do not publish it again as new")
		e.Data = publishResult{MsgID: msgID}
		return nil, e
	default:
		return nil, rpc.Errorf(rpc.CodeUnavailable,
			"backplane unavailable: the publish was not taken and was delivered nowhere, try again later")
	}
}

// rejected counts and logs a publish the backplane did not take, and
// returns err wrapping backplane.ErrUnavailable.
func (p *PubSub) rejected(msg backplane.Message, err error) error {
	p.cfg.Metrics.PublishRejected.Inc()
	p.cfg.Logger.Warn("publish rejected by the backplane", "channel", msg.Channel, "msg_id", msg.ID, "err", err)
	if !errors.Is(err, backplane.ErrUnavailable) {
		err = errors.Join(backplane.ErrUnavailable, err)
	}
	return err
}

// Deliver implements backplane.MessageHandler for messages of other nodes.
func (p *PubSub) Deliver(msg backplane.Message) {
	p.deliver(msg, "backplane")
}

// deliver queues msg to every local subscriber of its channel. The frame is
// encoded once and shared by all of them.
func (p *PubSub) deliver(msg backplane.Message, source string) {
	p.cfg.Metrics.MessagesIn.WithLabelValues(source).Inc()
	out := newOutgoing(msg)

	p.mu.RLock()
	defer p.mu.RUnlock()
	subs := p.channels[msg.Channel]
	for s := range subs {
		s.send(out)
	}
	p.cfg.Metrics.MessagesOut.Add(float64(len(subs)))
}

func (p *PubSub) ack(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply) {
	var params struct {
		MsgID *string `json:"msg_id"`
	}
	if perr := rpc.UnmarshalParams(req.Params, &params); perr != nil {
		reply(nil, perr)
		return
	}
	if params.MsgID == nil {
		reply(nil, rpc.Errorf(rpc.CodeInvalidParams, `invalid params: missing "msg_id"`))
		return
	}
	p.mu.RLock()
	s := p.conns[c]
	p.mu.RUnlock()
	if s != nil {
		s.ack(*params.MsgID)
	}
	reply(map[string]string{"msg_id": *params.MsgID}, nil)
}

var _ backplane.MessageHandler = (*PubSub)(nil)
