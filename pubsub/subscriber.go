package pubsub

import (
	"errors"
	"sync"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/metrics"
	"github.com/wscluster/wscluster/rpc"
	"github.com/wscluster/wscluster/wsconn"
)

// outgoing is one message ready for fan-out. Its frames are shared by every
// subscriber and never modified after creation.
type outgoing struct {
	msg   backplane.Message
	frame []byte

	redeliveryOnce  sync.Once
	redeliveryFrame []byte
}

// newOutgoing encodes msg straight into its frame buffer, behind room for
// the frame header, so the payload is written once and never copied.
func newOutgoing(msg backplane.Message) *outgoing {
	buf := make([]byte, wsconn.FrameHeadroom, wsconn.FrameHeadroom+96+len(msg.Channel)+len(msg.Data)+len(msg.ID))
	buf = rpc.AppendMessage(buf, msg.Channel, msg.Data, msg.ID, msg.QoS, false)
	return &outgoing{msg: msg, frame: wsconn.FinishTextFrame(buf)}
}

// redelivery returns the frame with "redelivered": true, encoded on first use
// and then shared by every subscriber that needs it.
func (o *outgoing) redelivery() []byte {
	o.redeliveryOnce.Do(func() {
		payload := rpc.AppendMessage(nil, o.msg.Channel, o.msg.Data, o.msg.ID, o.msg.QoS, true)
		o.redeliveryFrame = wsconn.TextFrame(payload)
	})
	return o.redeliveryFrame
}

// subscriber is the pub/sub state of one connection. The channels field is
// guarded by PubSub.mu; the QoS 1 state by mu.
type subscriber struct {
	conn     *wsconn.Conn
	ps       *PubSub
	channels map[string]struct{}

	mu sync.Mutex
	// unacked maps msg_id to its pending delivery.
	unacked map[string]*pending
	// retryQueue holds pending deliveries in due order; acked entries stay
	// until they reach the front, where they are skipped.
	retryQueue []*pending
	timer      *time.Timer
	stopped    bool
}

type pending struct {
	out     *outgoing
	due     time.Time
	retries int
	acked   bool
}

// send queues out to the connection and, for QoS 1, tracks it until acked.
func (s *subscriber) send(out *outgoing) {
	if out.msg.QoS == 1 && !s.track(out) {
		return
	}
	if err := s.conn.Send(out.frame); err != nil {
		s.countDrop(err)
	}
}

func (s *subscriber) countDrop(err error) {
	reason := metrics.DropClosed
	if errors.Is(err, wsconn.ErrSlowConsumer) {
		reason = metrics.DropSlowConsumer
	}
	s.ps.cfg.Metrics.MessagesDropped.WithLabelValues(reason).Inc()
}

// track records a QoS 1 delivery. It returns false when the connection has
// too many unacked messages, in which case it is closed as a slow consumer.
func (s *subscriber) track(out *outgoing) bool {
	cfg := &s.ps.cfg
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	if s.unacked == nil {
		s.unacked = make(map[string]*pending)
	}
	if len(s.unacked) >= cfg.MaxUnacked {
		s.conn.Logger().Warn("too many unacked QoS 1 messages", "unacked", len(s.unacked), "limit", cfg.MaxUnacked)
		s.conn.CloseSlowConsumer()
		cfg.Metrics.MessagesDropped.WithLabelValues(metrics.DropSlowConsumer).Inc()
		return false
	}
	if _, dup := s.unacked[out.msg.ID]; dup {
		// The same msg_id is never delivered twice to one subscriber.
		return false
	}
	p := &pending{out: out, due: time.Now().Add(cfg.QoS1RetryInterval)}
	s.unacked[out.msg.ID] = p
	s.retryQueue = append(s.retryQueue, p)
	if s.timer == nil {
		s.timer = time.AfterFunc(cfg.QoS1RetryInterval, s.retry)
	}
	return true
}

func (s *subscriber) ack(msgID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.unacked[msgID]; ok {
		p.acked = true
		delete(s.unacked, msgID)
	}
}

// retry redelivers every due message, drops those past the retry limit and
// re-arms the timer for the next due one.
func (s *subscriber) retry() {
	cfg := &s.ps.cfg
	now := time.Now()
	var resend [][]byte

	s.mu.Lock()
	for len(s.retryQueue) > 0 && !s.stopped {
		p := s.retryQueue[0]
		if !p.acked && p.due.After(now) {
			break
		}
		s.retryQueue[0] = nil
		s.retryQueue = s.retryQueue[1:]
		switch {
		case p.acked:
		case p.retries >= cfg.QoS1RetryLimit:
			delete(s.unacked, p.out.msg.ID)
			cfg.Metrics.MessagesDropped.WithLabelValues(metrics.DropQoS1RetryLimit).Inc()
		default:
			p.retries++
			p.due = now.Add(cfg.QoS1RetryInterval)
			s.retryQueue = append(s.retryQueue, p)
			resend = append(resend, p.out.redelivery())
		}
	}
	s.rearmLocked(now)
	s.mu.Unlock()

	// Frames are queued outside the lock, in due order, so that an ack
	// read meanwhile is not held up.
	for _, frame := range resend {
		cfg.Metrics.QoS1Redeliveries.Inc()
		if err := s.conn.Send(frame); err != nil {
			s.countDrop(err)
			return
		}
	}
}

func (s *subscriber) rearmLocked(now time.Time) {
	if len(s.retryQueue) == 0 || s.stopped {
		s.timer = nil
		s.retryQueue = nil
		return
	}
	s.timer = time.AfterFunc(s.retryQueue[0].due.Sub(now), s.retry)
}

// stop cancels redeliveries once the connection is gone.
func (s *subscriber) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.unacked = nil
	s.retryQueue = nil
}
