package redisbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// headerVersion starts every message on the channel.
const headerVersion = 1

// header is the part of a channel message before the envelope.
type header struct {
	// to is the addressee's node id, or empty for every node.
	to string
	// session is the sender's subscription session.
	session uint64
}

func appendMessage(dst []byte, h header, env *wire.Envelope) []byte {
	dst = append(dst, headerVersion)
	dst = binary.AppendUvarint(dst, uint64(len(h.to)))
	dst = append(dst, h.to...)
	dst = binary.BigEndian.AppendUint64(dst, h.session)
	return wire.Append(dst, env)
}

// errMalformed wraps every header decoding error.
var errMalformed = errors.New("malformed redis message")

func decodeMessage(b []byte) (header, *wire.Envelope, error) {
	if len(b) < 1 || b[0] != headerVersion {
		return header{}, nil, fmt.Errorf("%w: unknown header version", errMalformed)
	}
	b = b[1:]
	n, used := binary.Uvarint(b)
	if used <= 0 || n > uint64(len(b)-used) {
		return header{}, nil, fmt.Errorf("%w: bad addressee length", errMalformed)
	}
	b = b[used:]
	h := header{to: string(b[:n])}
	b = b[n:]
	if len(b) < 8 {
		return header{}, nil, fmt.Errorf("%w: truncated session", errMalformed)
	}
	h.session = binary.BigEndian.Uint64(b)
	env, err := wire.Decode(b[8:])
	if err != nil {
		return header{}, nil, err
	}
	return h, env, nil
}

// Send queues env for peer, or for every node when peer is empty, and
// never blocks. The core runs in broadcast mode over this transport, so a
// message for every node is one Send. Nothing is queued while the node is
// not subscribed: the new session of the next subscription brings every
// peer a new link, with replay and sync. A full queue starts a new session
// at once for the same reason.
func (t *Transport) Send(peer string, env *wire.Envelope) bool {
	t.mu.Lock()
	if t.closed || t.events == nil || !t.subscribed {
		t.mu.Unlock()
		return false
	}
	h := header{to: peer, session: t.session}
	var a *ack
	if env.Kind == wire.KindPublish && peer == "" {
		a = t.ackLocked(env)
	}
	t.mu.Unlock()

	item := outgoing{payload: appendMessage(nil, h, env), ack: a}
	select {
	case t.queue <- item:
		return true
	default:
		t.overflow(a)
		return false
	}
}

// overflow handles a full queue: the message is lost, so the session
// changes and every peer gets a new link with replay.
func (t *Transport) overflow(a *ack) {
	t.cfg.Metrics.RedisPublishErrors.Inc()
	t.logRepeated("redis publish queue full; starting a new session so peers recover by replay", nil)
	t.complete(a, fmt.Errorf("%w: the publish queue is full", ErrNotPublished))
	t.newSessionAfterLoss()
}

// newSessionAfterLoss changes the session after messages were lost on the
// way to Redis, and gives every known peer a new link.
func (t *Transport) newSessionAfterLoss() {
	t.mu.Lock()
	t.session = t.newSessionLocked()
	relink := t.relinkAllLocked()
	t.mu.Unlock()
	for _, ev := range relink {
		t.emit(ev)
	}
}

// publishLoop publishes queued messages, many per round trip.
func (t *Transport) publishLoop() {
	defer t.wg.Done()
	batch := make([]outgoing, 0, 256)
	for {
		select {
		case <-t.ctx.Done():
			return
		case item := <-t.queue:
			batch = append(batch[:0], item)
		}
		for len(batch) < cap(batch) {
			select {
			case item := <-t.queue:
				batch = append(batch, item)
				continue
			default:
			}
			break
		}
		t.publishBatch(batch)
	}
}

// publishBatch sends batch in one pipeline and reports each outcome.
func (t *Transport) publishBatch(batch []outgoing) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.PeerTimeout)
	defer cancel()
	pipe := t.client.Pipeline()
	for _, item := range batch {
		pipe.Publish(ctx, t.cfg.Channel, item.payload)
	}
	sent := time.Now()
	t.roundTrip.start(sent)
	cmds, err := pipe.Exec(ctx)
	t.roundTrip.finish(sent, time.Now())
	failed := false
	for i, item := range batch {
		itemErr := err
		if i < len(cmds) {
			itemErr = cmds[i].Err()
		}
		if itemErr != nil {
			failed = true
			t.cfg.Metrics.RedisPublishErrors.Inc()
			t.complete(item.ack, publishError(itemErr))
			continue
		}
		t.cfg.Metrics.RedisMessagesOut.Inc()
		t.complete(item.ack, nil)
	}
	t.mu.Lock()
	subscribed := t.subscribed
	t.mu.Unlock()
	if failed && subscribed && t.ctx.Err() == nil {
		t.logRepeated("redis publish failed; starting a new session so peers recover by replay", err)
		t.newSessionAfterLoss()
	}
}

// publishError classifies the failure of one PUBLISH of a pipeline. An
// error reply from Redis, or a connection that could not be opened, means
// Redis never ran it. Any other failure, such as a reply that timed out or a
// connection that broke, leaves the outcome unknown: the command may wait
// in the socket buffer of a paused Redis and run when it resumes.
func publishError(err error) error {
	var reply redis.Error
	var opErr *net.OpError
	if errors.As(err, &reply) || (errors.As(err, &opErr) && opErr.Op == "dial") {
		return fmt.Errorf("%w: %w", ErrNotPublished, err)
	}
	return fmt.Errorf("%w: %w", backplane.ErrUnconfirmed, err)
}

// ackLocked returns the ack of env, creating it if Acknowledged did not.
func (t *Transport) ackLocked(env *wire.Envelope) *ack {
	a := t.acks[env]
	if a == nil {
		a = &ack{done: make(chan struct{})}
		t.acks[env] = a
	}
	return a
}

func (t *Transport) complete(a *ack, err error) {
	if a == nil {
		return
	}
	a.err = err
	close(a.done)
}

// Acknowledged waits until Redis answered the PUBLISH of env.
func (t *Transport) Acknowledged(ctx context.Context, env *wire.Envelope) error {
	if env == nil {
		return nil
	}
	t.mu.Lock()
	a := t.ackLocked(env)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.acks, env)
		t.mu.Unlock()
	}()
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		// The envelope may be queued or written, so Redis may run it.
		return fmt.Errorf("%w: no reply from redis: %w", backplane.ErrUnconfirmed, ctx.Err())
	case <-t.ctx.Done():
		return fmt.Errorf("%w: the transport closed before redis replied", backplane.ErrUnconfirmed)
	}
}

// logRepeated logs msg with err at most once every 10 s per message,
// because a broken Redis would repeat the same failure many times a second.
func (t *Transport) logRepeated(msg string, err error) {
	now := time.Now()
	if last, ok := t.logged.Load(msg); ok && now.Sub(last.(time.Time)) < 10*time.Second {
		return
	}
	t.logged.Store(msg, now)
	t.log.Warn(msg, "error", describe(err))
}
