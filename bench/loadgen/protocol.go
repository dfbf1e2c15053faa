package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Protocol names accepted in Config.Protocol.
const (
	// ProtocolWSCluster is wscluster's JSON-RPC 2.0 protocol: one object
	// per text frame.
	ProtocolWSCluster = "wscluster"
	// ProtocolCentrifuge is the JSON protocol of the centrifuge library:
	// one or more replies per text frame, separated by newlines.
	ProtocolCentrifuge = "centrifuge"
)

// ErrUnknownProtocol is returned for a Config.Protocol that is neither
// ProtocolWSCluster nor ProtocolCentrifuge.
var ErrUnknownProtocol = errors.New("unknown protocol")

// setupTimeout bounds the subscribe exchange of one connection.
const setupTimeout = 30 * time.Second

// dialect is the part of a server's protocol that differs between
// wscluster and centrifuge.
type dialect interface {
	subprotocol() string
	// setup makes c ready for channel: connect, then subscribe when
	// channel is not empty.
	setup(c *wsConn, channel string) error
	// publish returns the text frame payload that publishes data (a JSON
	// object) on channel with request id.
	publish(dst []byte, id uint64, channel string, data []byte) []byte
	// split calls each for every message in one text frame.
	split(payload []byte, each func(msg []byte) error) error
	// reply sends the response that a server message needs, such as the
	// pong to an application-level ping, and returns true when msg was
	// such a message.
	reply(c *wsConn, msg []byte) (bool, error)
}

func newDialect(name string) (dialect, error) {
	switch name {
	case ProtocolWSCluster:
		return wsclusterDialect{}, nil
	case ProtocolCentrifuge:
		return centrifugeDialect{}, nil
	default:
		return nil, fmt.Errorf("%w %q: want %s or %s", ErrUnknownProtocol, name, ProtocolWSCluster, ProtocolCentrifuge)
	}
}

// awaitReply sends request and reads until the reply with id arrives. A
// reply with an error member fails.
func awaitReply(c *wsConn, d dialect, request []byte, id string) error {
	if err := c.writeText(request); err != nil {
		return err
	}
	idField := []byte(`"id":` + id)
	return c.readUntil(time.Now().Add(setupTimeout), func(payload []byte) (bool, error) {
		found := false
		err := d.split(payload, func(msg []byte) error {
			if _, err := d.reply(c, msg); err != nil {
				return err
			}
			if !bytes.Contains(msg, idField) {
				return nil
			}
			if bytes.Contains(msg, []byte(`"error"`)) {
				return fmt.Errorf("request %s failed: %s", request, msg)
			}
			found = true
			return nil
		})
		return found, err
	})
}

type wsclusterDialect struct{}

func (wsclusterDialect) subprotocol() string { return "wscluster.v1" }

func (d wsclusterDialect) setup(c *wsConn, channel string) error {
	if channel == "" {
		return nil
	}
	req := `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":` + strconv.Quote(channel) + `}}`
	return awaitReply(c, d, []byte(req), "1")
}

func (wsclusterDialect) publish(dst []byte, id uint64, channel string, data []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"method":"publish","params":{"channel":`...)
	dst = strconv.AppendQuote(dst, channel)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

func (wsclusterDialect) split(payload []byte, each func([]byte) error) error {
	return each(payload)
}

// reply has nothing to do, because wscluster pings with WebSocket ping
// frames and wsConn sends their pongs itself.
func (wsclusterDialect) reply(*wsConn, []byte) (bool, error) { return false, nil }

type centrifugeDialect struct{}

func (centrifugeDialect) subprotocol() string { return "centrifuge-json" }

func (d centrifugeDialect) setup(c *wsConn, channel string) error {
	if err := awaitReply(c, d, []byte(`{"id":1,"connect":{"name":"wscluster-loadgen"}}`), "1"); err != nil {
		return err
	}
	if channel == "" {
		return nil
	}
	req := `{"id":2,"subscribe":{"channel":` + strconv.Quote(channel) + `}}`
	return awaitReply(c, d, []byte(req), "2")
}

func (centrifugeDialect) publish(dst []byte, id uint64, channel string, data []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"publish":{"channel":`...)
	dst = strconv.AppendQuote(dst, channel)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

// split cuts a frame into its newline-separated replies: centrifuge packs
// up to 16 of them into one frame by default.
func (centrifugeDialect) split(payload []byte, each func([]byte) error) error {
	for len(payload) > 0 {
		line, rest, _ := bytes.Cut(payload, []byte{'\n'})
		payload = rest
		if len(line) == 0 {
			continue
		}
		if err := each(line); err != nil {
			return err
		}
	}
	return nil
}

// reply sends an empty command {} as the pong to the server's ping, which
// is an empty reply {}.
func (centrifugeDialect) reply(c *wsConn, msg []byte) (bool, error) {
	if len(msg) == 2 && msg[0] == '{' && msg[1] == '}' {
		return true, c.writeText([]byte("{}"))
	}
	return false, nil
}
