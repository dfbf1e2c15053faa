package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// waitTimeout bounds every wait for an expected frame, close or metric.
const waitTimeout = 5 * time.Second

// startNode starts a node with node id "n1" behind an httptest server on
// loopback and returns it with the URL of its /ws endpoint. mutate, if not
// nil, changes the default configuration first, for example to shorten
// timings. The node is shut down when the test ends, after every connection
// that dialRaw opened during the test is closed.
func startNode(t *testing.T, mutate func(*config.Node)) (*server.Node, string) {
	t.Helper()

	return startColdNode(t, mutate)
}

// startColdNode is startNode without the warm-up connection.
func startColdNode(t *testing.T, mutate func(*config.Node)) (*server.Node, string) {
	t.Helper()

	cfg := config.Default()
	cfg.NodeID = "n1"
	if mutate != nil {
		mutate(&cfg)
	}
	node, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	// Cleanups run last-registered first, so the node's connections close
	// before the HTTP server does.
	ts := httptest.NewServer(node.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = node.Shutdown(ctx)
	})

	return node, "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// httpURL returns the URL of an operational endpoint, such as "/metrics", of
// the node whose /ws URL is wsURL.
func httpURL(wsURL, path string) string {
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(wsURL, "/ws"), "ws")
	return base + path
}

// backlogs keeps the notifications that call and callRaw read while waiting
// for a response, so that nextFrame can return them later in arrival order.
var backlogs sync.Map // *websocket.Conn -> *backlog

type backlog struct {
	mu     sync.Mutex
	frames [][]byte
}

func backlogOf(ws *websocket.Conn) *backlog {
	b, _ := backlogs.LoadOrStore(ws, &backlog{})
	return b.(*backlog)
}

// dialRaw opens a WebSocket connection with the wscluster.v1 subprotocol.
// The connection is closed when the test ends.
func dialRaw(t *testing.T, url string) *websocket.Conn {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	dialer := websocket.Dialer{Subprotocols: []string{server.Subprotocol}, HandshakeTimeout: waitTimeout}
	ws, resp, err := dialer.DialContext(ctx, url, nil)
	require.NoError(t, err)
	_ = resp.Body.Close()

	t.Cleanup(func() {
		_ = ws.Close()
		backlogs.Delete(ws)
	})
	return ws
}

// sendText writes one text frame.
func sendText(t *testing.T, ws *websocket.Conn, raw string) {
	t.Helper()

	require.NoError(t, ws.SetWriteDeadline(time.Now().Add(waitTimeout)))
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(raw)))
}

// readWire reads the next text frame from the socket, ignoring the backlog.
func readWire(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()

	require.NoError(t, ws.SetReadDeadline(time.Now().Add(waitTimeout)))
	kind, data, err := ws.ReadMessage()
	require.NoError(t, err, "no frame arrived within %s", waitTimeout)
	require.Equal(t, websocket.TextMessage, kind, "the server sent a non-text frame")
	return data
}

// nextFrame returns the oldest notification kept by call or callRaw, or else
// the next text frame from the socket.
func nextFrame(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()

	b := backlogOf(ws)
	b.mu.Lock()
	if len(b.frames) > 0 {
		frame := b.frames[0]
		b.frames = b.frames[1:]
		b.mu.Unlock()
		return frame
	}
	b.mu.Unlock()
	return readWire(t, ws)
}

// isNotification reports whether frame is a single server notification: an
// object with "method" and without "id".
func isNotification(frame []byte) bool {
	var probe struct {
		Method *string          `json:"method"`
		ID     *json.RawMessage `json:"id"`
	}
	if json.Unmarshal(frame, &probe) != nil {
		return false
	}
	return probe.Method != nil && probe.ID == nil
}

// callRaw sends raw as one text frame and returns the next frame that is not
// a server notification. Notifications read meanwhile are kept for
// nextFrame and nextNotification.
func callRaw(t *testing.T, ws *websocket.Conn, raw string) []byte {
	t.Helper()

	sendText(t, ws, raw)
	for {
		frame := readWire(t, ws)
		if !isNotification(frame) {
			return frame
		}
		b := backlogOf(ws)
		b.mu.Lock()
		b.frames = append(b.frames, frame)
		b.mu.Unlock()
	}
}

// call sends one request as a text frame and returns the decoded response
// object. Notifications that arrive first are kept, as in callRaw.
func call(t *testing.T, ws *websocket.Conn, rawJSON string) map[string]any {
	t.Helper()

	frame := callRaw(t, ws, rawJSON)
	var resp map[string]any
	require.NoError(t, json.Unmarshal(frame, &resp), "the response is not a JSON object: %s", frame)
	return resp
}

// requestIDs numbers the requests that the helpers build, so that every
// response can be matched to its request.
var requestIDs atomic.Int64

// request builds a JSON-RPC request with a fresh numeric id and returns it
// with that id.
func request(t *testing.T, method string, params any) (string, int64) {
	t.Helper()

	id := requestIDs.Add(1)
	raw, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"method":  method,
		"params":  params,
	})
	require.NoError(t, err)
	return string(raw), id
}

// callMethod sends a request built from method and params and returns the
// response, after checking that it echoes the request's id.
func callMethod(t *testing.T, ws *websocket.Conn, method string, params any) map[string]any {
	t.Helper()

	raw, id := request(t, method, params)
	resp := call(t, ws, raw)
	require.Equal(t, "2.0", resp["jsonrpc"], "response: %v", resp)
	require.Equal(t, float64(id), resp["id"], "the response does not echo the request id: %v", resp)
	return resp
}

// resultOf requires resp to be a success response and returns its result.
func resultOf(t *testing.T, resp map[string]any) any {
	t.Helper()

	require.NotContains(t, resp, "error", "expected a result, got %v", resp)
	require.Contains(t, resp, "result", "the response has neither result nor error: %v", resp)
	return resp["result"]
}

// errorCodeOf requires resp to be an error response and returns its code.
func errorCodeOf(t *testing.T, resp map[string]any) int {
	t.Helper()

	require.NotContains(t, resp, "result", "expected an error, got %v", resp)
	e, ok := resp["error"].(map[string]any)
	require.True(t, ok, "the response has no error object: %v", resp)
	code, ok := e["code"].(float64)
	require.True(t, ok, "the error code is not a number: %v", e)
	require.IsType(t, "", e["message"], "the error message is not a string: %v", e)
	return int(code)
}

// requestOK sends a request built from method and params and returns its
// result, failing the test on an error response.
func requestOK(t *testing.T, ws *websocket.Conn, method string, params any) any {
	t.Helper()

	return resultOf(t, callMethod(t, ws, method, params))
}

// requestCode sends a request that must fail and returns its error code.
func requestCode(t *testing.T, ws *websocket.Conn, method string, params any) int {
	t.Helper()

	return errorCodeOf(t, callMethod(t, ws, method, params))
}

// subscribe subscribes ws to channel.
func subscribe(t *testing.T, ws *websocket.Conn, channel string) {
	t.Helper()

	result := requestOK(t, ws, "subscribe", map[string]any{"channel": channel})
	require.Equal(t, map[string]any{"channel": channel}, result)
}

// publish publishes data, given as raw JSON, with qos and returns the msg_id.
func publish(t *testing.T, ws *websocket.Conn, channel, data string, qos int) string {
	t.Helper()

	params := map[string]any{"channel": channel, "data": json.RawMessage(data), "qos": qos}
	result, ok := requestOK(t, ws, "publish", params).(map[string]any)
	require.True(t, ok, "the publish result is not an object")
	msgID, ok := result["msg_id"].(string)
	require.True(t, ok, "the publish result has no string msg_id: %v", result)
	require.NotEmpty(t, msgID)
	return msgID
}

// notification is one decoded server notification.
type notification struct {
	Method string
	Params map[string]any
	// Raw is the whole frame, for exact comparisons.
	Raw []byte
}

// nextNotification requires the next frame to be a server notification and
// returns it.
func nextNotification(t *testing.T, ws *websocket.Conn) notification {
	t.Helper()

	frame := nextFrame(t, ws)
	var n struct {
		JSONRPC string           `json:"jsonrpc"`
		Method  string           `json:"method"`
		Params  map[string]any   `json:"params"`
		ID      *json.RawMessage `json:"id"`
	}
	require.NoError(t, json.Unmarshal(frame, &n), "the frame is not a JSON object: %s", frame)
	require.Nil(t, n.ID, "expected a notification, got a response: %s", frame)
	require.Equal(t, "2.0", n.JSONRPC, "frame: %s", frame)
	require.NotEmpty(t, n.Method, "expected a notification: %s", frame)
	return notification{Method: n.Method, Params: n.Params, Raw: frame}
}

// nextMessage requires the next frame to be a "message" notification and
// returns its params.
func nextMessage(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()

	n := nextNotification(t, ws)
	require.Equal(t, "message", n.Method, "frame: %s", n.Raw)
	return n.Params
}

// flush sends a request and requires the next frame to be its response. It
// proves that the server queued nothing else to ws before that response,
// because the server serves the requests of a connection in order.
func flush(t *testing.T, ws *websocket.Conn) {
	t.Helper()

	id := "flush-" + strconv.FormatInt(requestIDs.Add(1), 10)
	sendText(t, ws, `{"jsonrpc":"2.0","id":"`+id+`","method":"presence.members","params":{"channel":"flush"}}`)
	frame := nextFrame(t, ws)
	var resp struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(frame, &resp), "the frame is not a JSON object: %s", frame)
	require.Equal(t, id, resp.ID, "a frame arrived before the response to the flush request: %s", frame)
}

// waitServed returns once the server has served every frame that ws sent
// before, by waiting for the response to one more request. Notifications
// that arrive meanwhile are kept, as in callRaw.
func waitServed(t *testing.T, ws *websocket.Conn) {
	t.Helper()

	resultOf(t, callMethod(t, ws, "presence.members", map[string]any{"channel": "flush"}))
}

// readCloseCode reads until the server closes the connection and returns the
// close status code. Frames read before the close are discarded.
func readCloseCode(t *testing.T, ws *websocket.Conn) int {
	t.Helper()

	deadline := time.Now().Add(waitTimeout)
	require.NoError(t, ws.SetReadDeadline(deadline))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, "the connection ended without a close frame")
		return ce.Code
	}
}

// metricValue reads /metrics over HTTP and returns the value of the sample
// named name whose label set contains labels, such as `reason="x"` (empty
// matches the sample without labels). A sample that is not exposed yet is
// 0, because counter vectors expose a label set only once it is used.
func metricValue(t *testing.T, wsURL, name, labels string) float64 {
	t.Helper()

	resp, err := http.Get(httpURL(wsURL, "/metrics"))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		if value, ok := parseSample(scanner.Text(), name, labels); ok {
			return value
		}
	}
	require.NoError(t, scanner.Err())
	return 0
}

// parseSample returns the value of a Prometheus text-format line when it is
// a sample of name whose labels contain labels.
func parseSample(line, name, labels string) (float64, bool) {
	rest, found := strings.CutPrefix(line, name)
	if !found {
		return 0, false
	}
	switch {
	case labels == "" && strings.HasPrefix(rest, " "):
	case labels != "" && strings.HasPrefix(rest, "{"):
		end := strings.Index(rest, "}")
		if end < 0 || !strings.Contains(rest[:end], labels) {
			return 0, false
		}
		rest = rest[end+1:]
	default:
		return 0, false
	}
	var value float64
	if _, err := fmt.Sscan(strings.TrimSpace(rest), &value); err != nil {
		return 0, false
	}
	return value, true
}

// waitUntil polls condition on the test goroutine, so that condition may use
// require, until it returns true or waitTimeout passes.
func waitUntil(t *testing.T, what string, condition func() bool) {
	t.Helper()

	deadline := time.Now().Add(waitTimeout)
	for !condition() {
		require.True(t, time.Now().Before(deadline), "timed out after %s waiting until %s", waitTimeout, what)
		time.Sleep(time.Millisecond)
	}
}
