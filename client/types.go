package client

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// Subprotocol is the WebSocket subprotocol that the client requests.
const Subprotocol = "wscluster.v1"

// Notification methods. The server sends the first three. The client emits
// MethodReconnected itself.
const (
	MethodMessage       = "message"
	MethodPresenceJoin  = "presence.join"
	MethodPresenceLeave = "presence.leave"
	MethodReconnected   = "reconnected"
)

// Options configures a Client. The zero value is usable: no reconnect,
// automatic acks, and the defaults listed on each field.
type Options struct {
	// Header contains extra HTTP headers for the WebSocket upgrade request.
	Header http.Header

	// Token, if set, is sent as the header "Authorization: Bearer <token>".
	Token string

	// FallbackURLs are dialed in order, round robin with the dial URL, when
	// reconnecting. The first redial goes to the URL after the one that
	// dropped. Dial itself only dials its url argument.
	FallbackURLs []string

	// Reconnect makes the client redial after the connection drops, then
	// restore its subscriptions and joins. Without it, the Notifications
	// channel is closed when the connection drops and every later request
	// fails with ErrDisconnected.
	Reconnect bool

	// ReconnectMin and ReconnectMax bound the delay before each redial. The
	// delay starts at ReconnectMin, doubles after each failed attempt up to
	// ReconnectMax, and a random jitter of up to half the delay is subtracted.
	// Defaults: 100ms and 5s.
	ReconnectMin, ReconnectMax time.Duration

	// ManualAck turns off automatic acks. By default, the client acks a QoS 1
	// message as soon as it is queued to the Notifications channel. With
	// ManualAck, call Ack after processing the message, and unacked messages
	// are redelivered by the server with Redelivered set.
	ManualAck bool

	// NotifyBuffer is the capacity of the Notifications channel. Default 1024.
	NotifyBuffer int

	// DialTimeout bounds each dial, including the WebSocket handshake, and
	// each request that restores a subscription or join after a reconnect.
	// Default 5s.
	DialTimeout time.Duration

	// IdleTimeout, if positive, treats the connection as dropped when no frame
	// arrives for this long. A server pings every --ping-interval (10s by
	// default), so a value of a few ping intervals detects a silent network
	// partition that TCP would take minutes to report. Zero disables it.
	IdleTimeout time.Duration

	// OnUnmatchedResponse, if set, is called by the reader goroutine with every
	// response whose id matches no request in flight. Examples are the reply
	// to a frame sent with WriteRaw, and the error with id null for a frame
	// that the server could not parse. It must not block. When nil, such
	// responses are logged at debug level and dropped.
	OnUnmatchedResponse func(response []byte)

	// Logger receives connection drops, reconnect attempts and protocol
	// problems. Nil discards them.
	Logger *slog.Logger
}

// Default option values.
const (
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
	DefaultNotifyBuffer = 1024
	DefaultDialTimeout  = 5 * time.Second
)

// withDefaults returns a copy of o with zero and negative values replaced by
// the defaults.
func (o Options) withDefaults() Options {
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = DefaultReconnectMin
	}
	if o.ReconnectMax <= 0 {
		o.ReconnectMax = DefaultReconnectMax
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = o.ReconnectMin
	}
	if o.NotifyBuffer <= 0 {
		o.NotifyBuffer = DefaultNotifyBuffer
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	return o
}

// Notification is a server notification, or the client's own
// "reconnected" event.
type Notification struct {
	// Method is MethodMessage, MethodPresenceJoin, MethodPresenceLeave or
	// MethodReconnected. A method that this package does not know is
	// delivered with only Params set.
	Method string

	// Received is time.Now() when the reader decoded the frame, or when the
	// reconnect finished for MethodReconnected.
	Received time.Time

	// Params is the params object as the server sent it. It is nil for
	// MethodReconnected.
	Params json.RawMessage

	// Message is set for MethodMessage.
	Message *Message

	// Presence is set for MethodPresenceJoin and MethodPresenceLeave.
	Presence *PresenceEvent

	// URL is set for MethodReconnected: the URL of the new connection.
	URL string

	// Rosters is set for MethodReconnected: the roster that each rejoined
	// channel returned, by channel name. Presence events that arrive after
	// the notification apply to these rosters.
	Rosters map[string][]Member
}

// Message contains the params of a "message" notification.
type Message struct {
	Channel     string          `json:"channel"`
	Data        json.RawMessage `json:"data"`
	MsgID       string          `json:"msg_id"`
	QoS         int             `json:"qos"`
	Redelivered bool            `json:"redelivered,omitempty"`
}

// PresenceEvent contains the params of a "presence.join" or "presence.leave"
// notification. A leave event carries only Channel and Member.
type PresenceEvent struct {
	Channel string          `json:"channel"`
	Member  string          `json:"member"`
	Node    string          `json:"node,omitempty"`
	Conn    string          `json:"conn,omitempty"`
	Info    json.RawMessage `json:"info,omitempty"`
}

// Member is one entry of a channel roster: a member id and every connection
// in the cluster that joined the channel as that member.
type Member struct {
	Member      string       `json:"member"`
	Connections []Connection `json:"connections"`
}

// Connection is one connection that joined a channel as a member.
type Connection struct {
	Node string          `json:"node"` // --node-id of the node that holds the connection
	Conn string          `json:"conn"` // connection id, unique in the cluster
	Info json.RawMessage `json:"info"`
}
