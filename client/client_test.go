package client_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// waitTimeout bounds every wait for an event in these tests.
const waitTimeout = 5 * time.Second

// retryInterval is the QoS 1 redelivery interval of the test nodes, short so
// that redelivery tests finish quickly.
const retryInterval = 200 * time.Millisecond

// testNode is a real node served by httptest on loopback.
type testNode struct {
	node   *server.Node
	server *httptest.Server
	url    string
}

// nodeConfig returns the configuration of a test node.
func nodeConfig(nodeID string) config.Node {
	cfg := config.Default()
	cfg.NodeID = nodeID
	cfg.QoS1RetryInterval = retryInterval

	return cfg
}

// startNode starts a node on a free loopback port.
func startNode(t *testing.T, nodeID string) *testNode {
	t.Helper()

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	return serveNode(t, nodeConfig(nodeID), listener)
}

// serveNode starts a node on listener and shuts it down when the test ends.
func serveNode(t *testing.T, cfg config.Node, listener net.Listener) *testNode {
	t.Helper()

	node, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	ts := httptest.NewUnstartedServer(node.Handler())
	_ = ts.Listener.Close()
	ts.Listener = listener
	ts.Start()

	n := &testNode{node: node, server: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"}
	t.Cleanup(n.shutdown)

	return n
}

// shutdown stops the node, which closes its clients with 1001. It is safe to
// call twice.
func (n *testNode) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	_ = n.node.Shutdown(ctx)
	n.server.Close()
}

// dial connects a client and closes it when the test ends.
func dial(t *testing.T, url string, opts client.Options) *client.Client {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	c, err := client.Dial(ctx, url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	return c
}

// testContext returns a context bounded by waitTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)

	return ctx
}

// nextNotification returns the next notification with the given method,
// skipping others, and fails the test after waitTimeout.
func nextNotification(t *testing.T, c *client.Client, method string) client.Notification {
	t.Helper()

	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case n, ok := <-c.Notifications():
			require.True(t, ok, "Notifications closed while waiting for %q", method)
			if n.Method == method {
				return n
			}
		case <-timer.C:
			require.FailNow(t, "notification did not arrive", "method %q, waited %s", method, waitTimeout)
		}
	}
}

// assertNoMessage checks that no message arrives within d. Only a wait can
// show that something does not happen.
func assertNoMessage(t *testing.T, c *client.Client, d time.Duration) {
	t.Helper()

	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case n, ok := <-c.Notifications():
			if !ok {
				return
			}
			assert.NotEqual(t, client.MethodMessage, n.Method, "unexpected message %s", n.Params)
		case <-timer.C:
			return
		}
	}
}

// waitClosed waits until the Notifications channel of c is closed.
func waitClosed(t *testing.T, c *client.Client) {
	t.Helper()

	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.Notifications():
			if !ok {
				return
			}
		case <-timer.C:
			require.FailNow(t, "Notifications was not closed", "waited %s", waitTimeout)
		}
	}
}

func TestSubscribePublishRoundTrip(t *testing.T) {
	node := startNode(t, "n1")
	subscriber := dial(t, node.url, client.Options{})
	publisher := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	require.NoError(t, subscriber.Subscribe(ctx, "news"))
	before := time.Now()
	msgID, err := publisher.Publish(ctx, "news", json.RawMessage(`{"n":1,"s":"x"}`), 0)
	require.NoError(t, err)
	assert.NotEmpty(t, msgID)

	n := nextNotification(t, subscriber, client.MethodMessage)
	require.NotNil(t, n.Message)
	assert.Equal(t, "news", n.Message.Channel)
	assert.JSONEq(t, `{"n":1,"s":"x"}`, string(n.Message.Data))
	assert.Equal(t, msgID, n.Message.MsgID)
	assert.Equal(t, 0, n.Message.QoS)
	assert.False(t, n.Message.Redelivered)
	assert.False(t, n.Received.Before(before), "Received %s is before the publish at %s", n.Received, before)
	assert.NotEmpty(t, n.Params)
}

func TestPublishGoValueData(t *testing.T) {
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	require.NoError(t, c.Subscribe(ctx, "values"))
	_, err := c.Publish(ctx, "values", map[string]int{"a": 1}, 0)
	require.NoError(t, err)

	n := nextNotification(t, c, client.MethodMessage)
	assert.JSONEq(t, `{"a":1}`, string(n.Message.Data))
}

func TestUnsubscribeStopsMessages(t *testing.T) {
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	require.NoError(t, c.Subscribe(ctx, "a"))
	require.NoError(t, c.Subscribe(ctx, "b"))
	require.NoError(t, c.Unsubscribe(ctx, "a"))
	_, err := c.Publish(ctx, "a", "dropped", 0)
	require.NoError(t, err)
	_, err = c.Publish(ctx, "b", "kept", 0)
	require.NoError(t, err)

	// A publish result is sent only after the message is queued to local
	// subscribers, and one connection's frames arrive in order, so "dropped"
	// would arrive before "kept".
	n := nextNotification(t, c, client.MethodMessage)
	assert.Equal(t, "b", n.Message.Channel)
	assert.JSONEq(t, `"kept"`, string(n.Message.Data))
}

func TestQoS1AutoAckStopsRedelivery(t *testing.T) {
	node := startNode(t, "n1")
	subscriber := dial(t, node.url, client.Options{})
	publisher := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	require.NoError(t, subscriber.Subscribe(ctx, "orders"))
	msgID, err := publisher.Publish(ctx, "orders", "o1", 1)
	require.NoError(t, err)

	n := nextNotification(t, subscriber, client.MethodMessage)
	assert.Equal(t, msgID, n.Message.MsgID)
	assert.Equal(t, 1, n.Message.QoS)
	assert.False(t, n.Message.Redelivered)
	assertNoMessage(t, subscriber, 3*retryInterval)
}

func TestQoS1ManualAckRedelivers(t *testing.T) {
	node := startNode(t, "n1")
	subscriber := dial(t, node.url, client.Options{ManualAck: true})
	publisher := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	require.NoError(t, subscriber.Subscribe(ctx, "orders"))
	msgID, err := publisher.Publish(ctx, "orders", "o1", 1)
	require.NoError(t, err)

	first := nextNotification(t, subscriber, client.MethodMessage)
	assert.Equal(t, msgID, first.Message.MsgID)
	assert.False(t, first.Message.Redelivered)

	again := nextNotification(t, subscriber, client.MethodMessage)
	assert.Equal(t, msgID, again.Message.MsgID)
	assert.True(t, again.Message.Redelivered)
	assert.JSONEq(t, `"o1"`, string(again.Message.Data))

	require.NoError(t, subscriber.Ack(msgID))
	assertNoMessage(t, subscriber, 3*retryInterval)
}

func TestPresenceJoinLeaveEvents(t *testing.T) {
	node := startNode(t, "n1")
	alice := dial(t, node.url, client.Options{})
	bob := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	roster, err := alice.Join(ctx, "room", "alice", map[string]string{"role": "host"})
	require.NoError(t, err)
	require.Len(t, roster, 1)
	assert.Equal(t, "alice", roster[0].Member)

	roster, err = bob.Join(ctx, "room", "bob", nil)
	require.NoError(t, err)
	require.Len(t, roster, 2)
	assert.Equal(t, "alice", roster[0].Member)
	assert.Equal(t, "bob", roster[1].Member)

	joined := nextNotification(t, alice, client.MethodPresenceJoin)
	require.NotNil(t, joined.Presence)
	assert.Equal(t, "room", joined.Presence.Channel)
	assert.Equal(t, "bob", joined.Presence.Member)
	assert.Equal(t, "n1", joined.Presence.Node)
	assert.NotEmpty(t, joined.Presence.Conn)
	assert.JSONEq(t, `{}`, string(joined.Presence.Info))

	require.NoError(t, bob.Leave(ctx, "room"))
	left := nextNotification(t, alice, client.MethodPresenceLeave)
	require.NotNil(t, left.Presence)
	assert.Equal(t, "room", left.Presence.Channel)
	assert.Equal(t, "bob", left.Presence.Member)
}

func TestMembersReturnsRoster(t *testing.T) {
	node := startNode(t, "n1")
	member := dial(t, node.url, client.Options{})
	observer := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	_, err := member.Join(ctx, "room", "carol", json.RawMessage(`{"seat":7}`))
	require.NoError(t, err)

	roster, err := observer.Members(ctx, "room")
	require.NoError(t, err)
	require.Len(t, roster, 1)
	assert.Equal(t, "carol", roster[0].Member)
	require.Len(t, roster[0].Connections, 1)
	assert.Equal(t, "n1", roster[0].Connections[0].Node)
	assert.NotEmpty(t, roster[0].Connections[0].Conn)
	assert.JSONEq(t, `{"seat":7}`, string(roster[0].Connections[0].Info))

	empty, err := observer.Members(ctx, "nobody-here")
	require.NoError(t, err)
	assert.Empty(t, empty)
}

func TestInvalidChannelReturnsRPCError(t *testing.T) {
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	for _, channel := range []string{"", "bad\x01name", strings.Repeat("x", 256)} {
		err := c.Subscribe(ctx, channel)
		var rpcErr *client.RPCError
		require.ErrorAs(t, err, &rpcErr, "channel %q", channel)
		assert.Equal(t, client.CodeInvalidChannel, rpcErr.Code, "channel %q", channel)
	}

	// A bad request leaves the connection open.
	assert.NoError(t, c.Subscribe(ctx, "good"))
}

func TestCallReturnsStandardErrors(t *testing.T) {
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	var rpcErr *client.RPCError
	err := c.Call(ctx, "no.such.method", map[string]string{}, nil)
	require.ErrorAs(t, err, &rpcErr)
	assert.Equal(t, client.CodeMethodNotFound, rpcErr.Code)

	err = c.Call(ctx, "subscribe", []string{"news"}, nil)
	require.ErrorAs(t, err, &rpcErr)
	assert.Equal(t, client.CodeInvalidParams, rpcErr.Code)

	var result struct {
		Channel string `json:"channel"`
	}
	require.NoError(t, c.Call(ctx, "subscribe", map[string]string{"channel": "news"}, &result))
	assert.Equal(t, "news", result.Channel)
}

func TestUnmatchedResponseReachesCallback(t *testing.T) {
	node := startNode(t, "n1")
	responses := make(chan []byte, 1)
	c := dial(t, node.url, client.Options{OnUnmatchedResponse: func(response []byte) {
		select {
		case responses <- response:
		default:
		}
	}})

	require.NoError(t, c.WriteRaw(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":`)))

	select {
	case response := <-responses:
		var reply struct {
			ID    json.RawMessage `json:"id"`
			Error client.RPCError `json:"error"`
		}
		require.NoError(t, json.Unmarshal(response, &reply), "response %s", response)
		assert.Equal(t, "null", string(reply.ID))
		assert.Equal(t, client.CodeParseError, reply.Error.Code)
	case <-time.After(waitTimeout):
		require.FailNow(t, "no reply to the unparsable frame", "waited %s", waitTimeout)
	}
}

func TestBinaryFrameClosesWith1003(t *testing.T) {
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{})

	require.NoError(t, c.WriteRaw(websocket.BinaryMessage, []byte("binary")))
	waitClosed(t, c)

	closeErr := c.CloseError()
	require.NotNil(t, closeErr)
	assert.Equal(t, websocket.CloseUnsupportedData, closeErr.Code)

	err := c.Subscribe(testContext(t), "news")
	assert.ErrorIs(t, err, client.ErrDisconnected)
}

func TestRequestWhileNotificationsFull(t *testing.T) {
	node := startNode(t, "n1")
	subscriber := dial(t, node.url, client.Options{NotifyBuffer: 1})
	publisher := dial(t, node.url, client.Options{})
	ctx := testContext(t)

	require.NoError(t, subscriber.Subscribe(ctx, "burst"))
	const count = 50
	for i := range count {
		_, err := publisher.Publish(ctx, "burst", i, 0)
		require.NoError(t, err)
	}

	// Nothing reads Notifications yet, so the reader is applying
	// backpressure. A request must still get its response.
	_, err := subscriber.Members(ctx, "burst")
	require.NoError(t, err)

	for i := range count {
		n := nextNotification(t, subscriber, client.MethodMessage)
		assert.JSONEq(t, string(mustJSON(t, i)), string(n.Message.Data), "message %d", i)
	}
}

// mustJSON marshals v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()

	data, err := json.Marshal(v)
	require.NoError(t, err)

	return data
}

func TestCloseTwice(t *testing.T) {
	node := startNode(t, "n1")
	ctx := testContext(t)
	c, err := client.Dial(ctx, node.url, client.Options{})
	require.NoError(t, err)
	require.NoError(t, c.Subscribe(ctx, "news"))

	assert.NoError(t, c.Close())
	assert.NoError(t, c.Close())

	_, ok := <-c.Notifications()
	assert.False(t, ok, "Notifications is still open after Close")
	assert.ErrorIs(t, c.Subscribe(ctx, "news"), client.ErrClosed)
	assert.ErrorIs(t, c.Notify("ack", nil), client.ErrClosed)
}

func TestDialErrors(t *testing.T) {
	node := startNode(t, "n1")
	ctx := testContext(t)

	_, err := client.Dial(ctx, strings.TrimSuffix(node.url, "/ws")+"/no-such-path", client.Options{})
	var handshake *client.HandshakeError
	require.ErrorAs(t, err, &handshake)
	assert.Equal(t, 404, handshake.StatusCode)
	assert.ErrorIs(t, err, websocket.ErrBadHandshake)

	// A port that was free a moment ago refuses the connection.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := listener.Addr().String()
	require.NoError(t, listener.Close())
	_, err = client.Dial(ctx, "ws://"+addr+"/ws", client.Options{})
	assert.Error(t, err)
}

func TestDropWithoutReconnect(t *testing.T) {
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{})
	require.NoError(t, c.Subscribe(testContext(t), "news"))

	node.shutdown()
	waitClosed(t, c)

	closeErr := c.CloseError()
	require.NotNil(t, closeErr)
	assert.Equal(t, websocket.CloseGoingAway, closeErr.Code)
	assert.ErrorIs(t, c.Subscribe(testContext(t), "news"), client.ErrDisconnected)
}

func TestReconnectToFallbackResubscribes(t *testing.T) {
	first := startNode(t, "n1")

	// The fallback node starts only after the first one is gone, on an
	// address reserved now so the client can be given its URL.
	reserved, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fallbackAddr := reserved.Addr().String()
	require.NoError(t, reserved.Close())
	fallbackURL := "ws://" + fallbackAddr + "/ws"

	c := dial(t, first.url, client.Options{
		FallbackURLs: []string{fallbackURL},
		Reconnect:    true,
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 200 * time.Millisecond,
	})
	ctx := testContext(t)
	require.NoError(t, c.Subscribe(ctx, "news"))
	_, err = c.Join(ctx, "room", "dave", map[string]int{"v": 1})
	require.NoError(t, err)

	first.shutdown()
	listener, err := net.Listen("tcp", fallbackAddr)
	require.NoError(t, err)
	second := serveNode(t, nodeConfig("n2"), listener)

	reconnected := nextNotification(t, c, client.MethodReconnected)
	assert.Equal(t, fallbackURL, reconnected.URL)
	require.Contains(t, reconnected.Rosters, "room")
	require.Len(t, reconnected.Rosters["room"], 1)
	assert.Equal(t, "dave", reconnected.Rosters["room"][0].Member)

	closeErr := c.CloseError()
	require.NotNil(t, closeErr)
	assert.Equal(t, websocket.CloseGoingAway, closeErr.Code)

	// The restored subscription and join are live on the new node.
	publisher := dial(t, second.url, client.Options{})
	msgID, err := publisher.Publish(ctx, "news", "after", 0)
	require.NoError(t, err)
	n := nextNotification(t, c, client.MethodMessage)
	assert.Equal(t, msgID, n.Message.MsgID)
	assert.JSONEq(t, `"after"`, string(n.Message.Data))

	roster, err := publisher.Members(ctx, "room")
	require.NoError(t, err)
	require.Len(t, roster, 1)
	require.Len(t, roster[0].Connections, 1)
	assert.Equal(t, "n2", roster[0].Connections[0].Node)
	assert.JSONEq(t, `{"v":1}`, string(roster[0].Connections[0].Info))
}

func TestIdleTimeoutDropsSilentConnection(t *testing.T) {
	// The node pings every 10s by default, so the connection is silent for
	// far longer than the idle timeout.
	node := startNode(t, "n1")
	c := dial(t, node.url, client.Options{IdleTimeout: 100 * time.Millisecond})

	waitClosed(t, c)
	err := c.Subscribe(testContext(t), "news")
	assert.ErrorIs(t, err, client.ErrDisconnected)
}

func TestServerPingsKeepConnectionAlive(t *testing.T) {
	cfg := nodeConfig("n1")
	cfg.PingInterval = 50 * time.Millisecond
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	node := serveNode(t, cfg, listener)
	// The gap between the node's pings varies, and gaps of about 350ms were
	// seen under the race detector, so the idle timeout leaves room for them.
	c := dial(t, node.url, client.Options{IdleTimeout: 750 * time.Millisecond})

	// Only a wait can show that the connection survives several idle
	// timeouts, each reset by a ping.
	select {
	case _, ok := <-c.Notifications():
		require.True(t, ok, "connection dropped although the node pings it; close frame %v", c.CloseError())
	case <-time.After(2 * time.Second):
	}
	assert.NoError(t, c.Subscribe(testContext(t), "news"))
}

// startSilentPeer starts a WebSocket endpoint that reads frames and never
// replies. A node always replies at once, so only such a peer can hold a
// request in flight. After dropAfter frames it closes the TCP connection
// without a close frame, or never when dropAfter is 0.
func startSilentPeer(t *testing.T, dropAfter int) string {
	t.Helper()

	upgrader := websocket.Upgrader{Subprotocols: []string{client.Subprotocol}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for frames := 1; ; frames++ {
			if _, _, err := ws.ReadMessage(); err != nil || frames == dropAfter {
				return
			}
		}
	}))
	t.Cleanup(ts.Close)

	return "ws" + strings.TrimPrefix(ts.URL, "http")
}

func TestInFlightRequestFailsOnDrop(t *testing.T) {
	c := dial(t, startSilentPeer(t, 1), client.Options{})

	err := c.Subscribe(testContext(t), "news")
	assert.ErrorIs(t, err, client.ErrDisconnected)
	assert.Nil(t, c.CloseError(), "the peer sent no close frame")
	waitClosed(t, c)
}

func TestInFlightRequestStopsAtContextEnd(t *testing.T) {
	c := dial(t, startSilentPeer(t, 0), client.Options{})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Subscribe(ctx, "news")
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// The connection is still usable after the abandoned request.
	assert.NoError(t, c.Notify("ack", map[string]string{"msg_id": "m1"}))
}

func TestCloseFailsInFlightRequest(t *testing.T) {
	c := dial(t, startSilentPeer(t, 0), client.Options{})

	result := make(chan error, 1)
	go func() { result <- c.Subscribe(context.Background(), "news") }()

	// Close may come before the request is sent. Both orders end in ErrClosed.
	require.NoError(t, c.Close())
	select {
	case err := <-result:
		assert.ErrorIs(t, err, client.ErrClosed)
	case <-time.After(waitTimeout):
		require.FailNow(t, "request still waits after Close", "waited %s", waitTimeout)
	}
}

// Publishes sent without waiting keep their order, each result matches its
// message, and a result is read once.
func TestPublishAsyncKeepsOrder(t *testing.T) {
	node := startNode(t, "n1")
	subscriber := dial(t, node.url, client.Options{})
	publisher := dial(t, node.url, client.Options{})
	ctx := testContext(t)
	require.NoError(t, subscriber.Subscribe(ctx, "pipelined"))

	const count = 200
	pending := make([]*client.PendingPublish, count)
	for i := range pending {
		p, err := publisher.PublishAsync("pipelined", i, i%2)
		require.NoError(t, err)
		pending[i] = p
	}
	msgIDs := make([]string, count)
	for i, p := range pending {
		msgID, err := p.Wait(ctx)
		require.NoError(t, err, "publish %d", i)
		msgIDs[i] = msgID
	}
	_, err := pending[0].Wait(ctx)
	require.ErrorIs(t, err, client.ErrWaitedTwice)

	for i := range count {
		n := nextNotification(t, subscriber, client.MethodMessage)
		require.JSONEq(t, strconv.Itoa(i), string(n.Message.Data), "message %d out of order", i)
		require.Equal(t, msgIDs[i], n.Message.MsgID, "message %d", i)
	}
}
