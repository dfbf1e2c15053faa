package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// connDial dials url with dialer and header and returns the handshake
// response also when the server rejected the upgrade. An open connection is
// closed when the test ends.
func connDial(t *testing.T, dialer websocket.Dialer, url string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()

	dialer.HandshakeTimeout = waitTimeout
	ws, resp, err := dialer.Dial(url, header)
	if resp != nil {
		_ = resp.Body.Close()
	}
	if ws != nil {
		t.Cleanup(func() { _ = ws.Close() })
	}
	return ws, resp, err
}

// connRoundTrip requires a response to a presence.members request on ws,
// which proves that the connection and the node still serve it.
func connRoundTrip(t *testing.T, ws *websocket.Conn) {
	t.Helper()

	result := requestOK(t, ws, "presence.members", map[string]any{"channel": "round-trip"})
	require.Equal(t, map[string]any{"channel": "round-trip", "members": []any{}}, result)
}

// connPaddedPublish returns a publish request of exactly size bytes, padded
// inside its string data.
func connPaddedPublish(t *testing.T, size int) []byte {
	t.Helper()

	head := `{"jsonrpc":"2.0","id":"padded","method":"publish","params":{"channel":"c","data":"`
	tail := `"}}`
	padding := size - len(head) - len(tail)
	require.GreaterOrEqual(t, padding, 0, "size %d is too small for a publish request", size)
	return []byte(head + strings.Repeat("p", padding) + tail)
}

// connReadClose reads from ws until the server closes it and returns the
// close error. It fails the test when the connection ends without a close
// frame.
func connReadClose(t *testing.T, ws *websocket.Conn) *websocket.CloseError {
	t.Helper()

	require.NoError(t, ws.SetReadDeadline(time.Now().Add(waitTimeout)))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, "the connection ended without a close frame")
		return ce
	}
}

// connWaitMetric polls /metrics until the sample equals want.
func connWaitMetric(t *testing.T, wsURL, name, labels string, want float64) {
	t.Helper()

	require.Eventually(t, func() bool {
		return metricValue(t, wsURL, name, labels) == want
	}, waitTimeout, 10*time.Millisecond, "%s{%s} did not reach %v", name, labels, want)
}

// connRawClient is a WebSocket client written by hand on a TCP connection.
// After the handshake it sends nothing, not even a pong, unless a test
// writes to conn, so it is the silent client that the server must drop.
type connRawClient struct {
	conn net.Conn
	br   *bufio.Reader
}

// connDialSilent opens a raw WebSocket connection to wsURL and returns once
// the server responded to the handshake with 101.
func connDialSilent(t *testing.T, wsURL string) *connRawClient {
	t.Helper()

	u, err := url.Parse(wsURL)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", u.Host, waitTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitTimeout)))

	// The key is the sample nonce of RFC 6455, section 1.3. Any 16 bytes
	// in base64 are valid.
	handshake := "GET " + u.Path + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n"
	_, err = io.WriteString(conn, handshake)
	require.NoError(t, err)

	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.NoError(t, conn.SetDeadline(time.Time{}))
	return &connRawClient{conn: conn, br: br}
}

// readFrame reads one unmasked server frame and returns its first byte
// (FIN bit and opcode) and its payload.
func (c *connRawClient) readFrame(t *testing.T) (byte, []byte) {
	t.Helper()

	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	var header [2]byte
	_, err := io.ReadFull(c.br, header[:])
	require.NoError(t, err, "reading a frame header")
	require.Zero(t, header[1]&0x80, "the server masked a frame")

	length := uint64(header[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		_, err = io.ReadFull(c.br, ext[:])
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		_, err = io.ReadFull(c.br, ext[:])
		length = binary.BigEndian.Uint64(ext[:])
	}
	require.NoError(t, err, "reading an extended payload length")
	require.LessOrEqual(t, length, uint64(1<<20), "implausible frame length")

	payload := make([]byte, length)
	_, err = io.ReadFull(c.br, payload)
	require.NoError(t, err, "reading a frame payload")
	return header[0], payload
}

// readCloseCode skips pings and returns the status code of the close frame
// the server sent. It requires the server to close the TCP connection after
// that frame.
func (c *connRawClient) readCloseCode(t *testing.T) int {
	t.Helper()

	for {
		first, payload := c.readFrame(t)
		if first == 0x89 {
			continue
		}
		require.Equal(t, byte(0x88), first, "expected a close frame, got first byte %#x", first)
		require.GreaterOrEqual(t, len(payload), 2, "the close frame has no status code")

		_, err := c.br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "the server did not close the TCP connection after its close frame")
		return int(binary.BigEndian.Uint16(payload))
	}
}

func TestConnMessageAtSizeLimitAccepted(t *testing.T) {
	const limit = 1024
	_, wsURL := startNode(t, func(cfg *config.Node) { cfg.MaxMessageBytes = limit })

	// A write buffer above the limit keeps each message in one frame, and
	// a small one splits it into fragments that only add up to the limit.
	dialers := map[string]websocket.Dialer{
		"one frame": {WriteBufferSize: 4 * limit},
		"fragments": {WriteBufferSize: 64},
	}
	for name, dialer := range dialers {
		t.Run(name, func(t *testing.T) {
			ws, _, err := connDial(t, dialer, wsURL, nil)
			require.NoError(t, err)

			request := connPaddedPublish(t, limit)
			require.Len(t, request, limit)
			require.NoError(t, ws.WriteMessage(websocket.TextMessage, request))

			resp := readWire(t, ws)
			assert.Contains(t, string(resp), `"id":"padded"`)
			assert.Contains(t, string(resp), `"msg_id"`)
		})
	}
}

func TestConnBadInputCloses(t *testing.T) {
	const limit = 1024
	_, wsURL := startNode(t, func(cfg *config.Node) { cfg.MaxMessageBytes = limit })

	// The bystander is open through every case, and must keep working.
	bystander := dialRaw(t, wsURL)
	connRoundTrip(t, bystander)

	oneFrame := websocket.Dialer{WriteBufferSize: 4 * limit}
	fragments := websocket.Dialer{WriteBufferSize: 64}
	validRequest := []byte(`{"jsonrpc":"2.0","id":1,"method":"presence.members","params":{"channel":"c"}}`)
	cases := []struct {
		name    string
		dialer  websocket.Dialer
		kind    int
		payload []byte
		code    int
	}{
		{"text one byte over the limit", oneFrame, websocket.TextMessage, connPaddedPublish(t, limit+1), 1009},
		{"fragments one byte over the limit", fragments, websocket.TextMessage, connPaddedPublish(t, limit+1), 1009},
		{"text far over the limit", oneFrame, websocket.TextMessage, connPaddedPublish(t, 64*limit), 1009},
		{"binary frame", oneFrame, websocket.BinaryMessage, validRequest, 1003},
		{"empty binary frame", oneFrame, websocket.BinaryMessage, nil, 1003},
		{"invalid UTF-8", oneFrame, websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"` + "\xff\xfe" + `"}}`), 1007},
		{"truncated UTF-8 sequence", oneFrame, websocket.TextMessage, []byte("\"\xe2\x82"), 1007},
		{"UTF-16 surrogate", oneFrame, websocket.TextMessage, []byte("\"\xed\xa0\x80\""), 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			labels := `code="` + strconv.Itoa(tc.code) + `"`
			before := metricValue(t, wsURL, "wscluster_bad_input_closes_total", labels)

			ws, _, err := connDial(t, tc.dialer, wsURL, nil)
			require.NoError(t, err)
			require.NoError(t, ws.WriteMessage(tc.kind, tc.payload))

			ce := connReadClose(t, ws)
			assert.Equal(t, tc.code, ce.Code, "close reason: %q", ce.Text)
			assert.Equal(t, before+1, metricValue(t, wsURL, "wscluster_bad_input_closes_total", labels))

			connRoundTrip(t, bystander)
			connRoundTrip(t, dialRaw(t, wsURL))
		})
	}
}

// connFloodMaxMessages bounds the flood of the slow-consumer test. At 32 KiB
// each it is 64 MiB, far more than the loopback socket buffers of a client
// that does not read. Linux grows a receive buffer only while the
// application reads, and caps a send buffer at net.ipv4.tcp_wmem, 4 MiB by
// default.
const connFloodMaxMessages = 2000

// connSeq returns the "seq" field of a message notification whose data is
// {"seq":N,...}, without decoding the rest of the frame.
func connSeq(frame []byte) (int, error) {
	const key = `"data":{"seq":`
	start := bytes.Index(frame, []byte(key))
	if start < 0 {
		return 0, fmt.Errorf("no seq in frame %.80s", frame)
	}
	digits := frame[start+len(key):]
	end := bytes.IndexByte(digits, ',')
	if end < 0 {
		return 0, fmt.Errorf("seq not followed by a comma in frame %.80s", frame)
	}
	seq, err := strconv.Atoi(string(digits[:end]))
	if err != nil {
		return 0, fmt.Errorf("invalid seq in frame %.80s: %w", frame, err)
	}
	return seq, nil
}

// connCollectSeqs reads message notifications from ws until an error, and
// sends the seq of each to seqs. It touches no testing.T, because it may
// outlive the test.
func connCollectSeqs(ws *websocket.Conn, seqs chan<- int, failed chan<- error) {
	for {
		_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
		_, frame, err := ws.ReadMessage()
		if err == nil {
			var seq int
			seq, err = connSeq(frame)
			if err == nil {
				seqs <- seq
				continue
			}
		}
		failed <- err
		return
	}
}

func TestConnSlowConsumerDoesNotHoldBackOthers(t *testing.T) {
	_, wsURL := startNode(t, func(cfg *config.Node) {
		cfg.SendQueueLength = 16
		cfg.SendQueueBytes = 512 << 10
	})
	const channel = "flood"

	// The slow subscriber reads its subscribe response and then nothing.
	slow := dialRaw(t, wsURL)
	subscribe(t, slow, channel)
	healthy := dialRaw(t, wsURL)
	subscribe(t, healthy, channel)
	publisher := dialRaw(t, wsURL)

	seqs := make(chan int, connFloodMaxMessages+64)
	healthyFailed := make(chan error, 1)
	go connCollectSeqs(healthy, seqs, healthyFailed)

	// Each publish waits for its response, so the publisher never outruns
	// the node. The metric is read every 16 publishes, well inside the
	// server's close grace of 3 s for the slow client's close frame.
	padding := strings.Repeat("x", 32<<10)
	published := 0
	publishBatch := func() {
		for range 16 {
			publish(t, publisher, channel, fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, published, padding), 0)
			published++
		}
	}
	for published < connFloodMaxMessages && metricValue(t, wsURL, "wscluster_slow_consumer_closes_total", "") == 0 {
		publishBatch()
	}
	require.Equal(t, 1.0, metricValue(t, wsURL, "wscluster_slow_consumer_closes_total", ""),
		"no slow-consumer close after %d publishes of 32 KiB", published)
	t.Logf("the slow-consumer close came within %d publishes", published)

	// The slow client now reads what the kernel buffered: a gapless prefix
	// of the messages, then the close frame the writer sends after them.
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(waitTimeout)))
	slowReceived := 0
	var closeErr *websocket.CloseError
	for {
		_, frame, err := slow.ReadMessage()
		if err != nil {
			require.ErrorAs(t, err, &closeErr, "the slow client got no close frame after %d messages", slowReceived)
			break
		}
		seq, err := connSeq(frame)
		require.NoError(t, err)
		require.Equal(t, slowReceived, seq, "the slow client's messages have a gap")
		slowReceived++
	}
	assert.Equal(t, 4008, closeErr.Code)
	assert.Equal(t, "slow consumer", closeErr.Text)
	assert.Less(t, slowReceived, published, "the slow client received every message, so it was not slow")

	// Messages published after the slow client is gone reach the healthy one
	// too, in the same order.
	publishBatch()
	for want := range published {
		select {
		case seq := <-seqs:
			require.Equal(t, want, seq, "the healthy subscriber's messages have a gap or are out of order")
		case err := <-healthyFailed:
			require.FailNow(t, "the healthy subscriber stopped reading", "after %d messages: %v", want, err)
		case <-time.After(waitTimeout):
			require.FailNow(t, "the healthy subscriber is missing messages", "received %d of %d", want, published)
		}
	}

	connWaitMetric(t, wsURL, "wscluster_connections", "", 2)
	assert.GreaterOrEqual(t, metricValue(t, wsURL, "wscluster_messages_dropped_total", `reason="slow_consumer"`), 1.0)
	connRoundTrip(t, publisher)
}

// connPingInterval is the ping interval of the ping tests, short enough to
// see several pings within a second.
const connPingInterval = 200 * time.Millisecond

// connPongSlack is the scheduling delay allowed beyond the contract's
// 2 x ping interval, for loaded machines and the race detector.
const connPongSlack = 500 * time.Millisecond

func TestConnPingAnsweredStaysOpen(t *testing.T) {
	_, wsURL := startNode(t, func(cfg *config.Node) { cfg.PingInterval = connPingInterval })
	ws := dialRaw(t, wsURL)

	// The handler replies with a pong, as gorilla's default handler does,
	// and counts the pings.
	var pings atomic.Int32
	ws.SetPingHandler(func(appData string) error {
		pings.Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(appData), time.Now().Add(waitTimeout))
	})
	frames := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
			_, frame, err := ws.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			frames <- frame
		}
	}()

	// Waiting out the time is the point: the connection must survive 6 ping
	// intervals in which the client replies to every ping.
	select {
	case err := <-readErr:
		require.FailNow(t, "the server closed a client that answers pings", "%v", err)
	case <-time.After(6 * connPingInterval):
	}
	assert.GreaterOrEqual(t, pings.Load(), int32(4), "the server sent too few pings")

	sendText(t, ws, `{"jsonrpc":"2.0","id":7,"method":"presence.members","params":{"channel":"c"}}`)
	select {
	case frame := <-frames:
		assert.JSONEq(t, `{"jsonrpc":"2.0","id":7,"result":{"channel":"c","members":[]}}`, string(frame))
	case err := <-readErr:
		require.FailNow(t, "the connection failed", "%v", err)
	case <-time.After(waitTimeout):
		require.FailNow(t, "no response after the pings")
	}
	connWaitMetric(t, wsURL, "wscluster_connections", "", 1)
}

func TestConnPingUnansweredCloses(t *testing.T) {
	_, wsURL := startNode(t, func(cfg *config.Node) { cfg.PingInterval = connPingInterval })

	// This client keeps reading, so it reads the close frame, but sends no
	// pong.
	start := time.Now()
	ws := dialRaw(t, wsURL)
	ws.SetPingHandler(func(string) error { return nil })

	ce := connReadClose(t, ws)
	elapsed := time.Since(start)
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "pong timeout", ce.Text)
	assert.GreaterOrEqual(t, elapsed, connPingInterval, "closed before a pong could be due")
	assert.LessOrEqual(t, elapsed, 2*connPingInterval+connPongSlack)
	connWaitMetric(t, wsURL, "wscluster_connections", "", 0)
}

func TestConnSilentClientRemoved(t *testing.T) {
	_, wsURL := startNode(t, func(cfg *config.Node) { cfg.PingInterval = connPingInterval })

	// The raw client neither reads nor writes after the handshake.
	start := time.Now()
	raw := connDialSilent(t, wsURL)
	connWaitMetric(t, wsURL, "wscluster_connections", "", 1)

	deadline := start.Add(2*connPingInterval + connPongSlack)
	for metricValue(t, wsURL, "wscluster_connections", "") != 0 {
		require.True(t, time.Now().Before(deadline), "the silent client is still connected after %s", time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}

	// The kernel kept what the server sent: pings, then the close frame.
	first, payload := raw.readFrame(t)
	assert.Equal(t, byte(0x89), first, "the server's first frame is not a ping")
	assert.Empty(t, payload)
	assert.Equal(t, websocket.ClosePolicyViolation, raw.readCloseCode(t))
}

func TestConnClientPingGetsPong(t *testing.T) {
	_, wsURL := startNode(t, nil)
	ws := dialRaw(t, wsURL)

	pongs := make(chan string, 4)
	ws.SetPongHandler(func(appData string) error {
		pongs <- appData
		return nil
	})
	require.NoError(t, ws.WriteControl(websocket.PingMessage, []byte("ping-42"), time.Now().Add(waitTimeout)))

	// The server reads the ping before the request, so its pong precedes
	// the response and gorilla runs the pong handler while reading it.
	connRoundTrip(t, ws)
	select {
	case appData := <-pongs:
		assert.Equal(t, "ping-42", appData)
	default:
		t.Fatal("no pong arrived before the response")
	}
}

func TestConnClientCloseEchoed(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		echo    int
	}{
		{"normal closure", websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), websocket.CloseNormalClosure},
		{"going away", websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), websocket.CloseGoingAway},
		{"application code", websocket.FormatCloseMessage(4001, "bye"), 4001},
		// An empty close frame means 1005, which may not be sent, so the
		// server replies with 1000.
		{"no status code", nil, websocket.CloseNormalClosure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			node, wsURL := startNode(t, nil)
			watcher := dialRaw(t, wsURL)
			requestOK(t, watcher, "presence.join", map[string]any{"channel": "room", "member": "watcher"})

			client := dialRaw(t, wsURL)
			subscribe(t, client, "news")
			requestOK(t, client, "presence.join", map[string]any{"channel": "room", "member": "leaver"})
			join := nextNotification(t, watcher)
			require.Equal(t, "presence.join", join.Method)
			require.Len(t, node.Presence().Members("room"), 2)

			require.NoError(t, client.WriteControl(websocket.CloseMessage, tc.payload, time.Now().Add(waitTimeout)))
			ce := connReadClose(t, client)
			assert.Equal(t, tc.echo, ce.Code)

			// The leaver's presence entry and subscription are gone.
			leave := nextNotification(t, watcher)
			assert.Equal(t, "presence.leave", leave.Method)
			assert.Equal(t, map[string]any{"channel": "room", "member": "leaver"}, leave.Params)
			members := requestOK(t, watcher, "presence.members", map[string]any{"channel": "room"}).(map[string]any)["members"].([]any)
			require.Len(t, members, 1)
			assert.Equal(t, "watcher", members[0].(map[string]any)["member"])
			connWaitMetric(t, wsURL, "wscluster_connections", "", 1)
			assert.Equal(t, 0.0, metricValue(t, wsURL, "wscluster_subscriptions", ""))

			require.NoError(t, watcher.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitTimeout)))
			assert.Equal(t, websocket.CloseNormalClosure, connReadClose(t, watcher).Code)
			connWaitMetric(t, wsURL, "wscluster_connections", "", 0)
			assert.Empty(t, node.Presence().Members("room"))
		})
	}
}

func TestConnOrigins(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		// origin is the Origin header. "same" is the test server's own
		// origin, and "" sends no header.
		origin string
		ok     bool
	}{
		{"default without origin", nil, "", true},
		{"default same origin", nil, "same", true},
		{"default same origin upper case", nil, "SAME", true},
		{"default other host", nil, "http://evil.example", false},
		{"default other port", nil, "http://127.0.0.1:1", false},
		{"default null origin", nil, "null", false},
		{"list exact match", []string{"https://app.example"}, "https://app.example", true},
		{"list match in upper case", []string{"https://app.example"}, "HTTPS://APP.EXAMPLE", true},
		{"list without origin", []string{"https://app.example"}, "", true},
		{"list other scheme", []string{"https://app.example"}, "http://app.example", false},
		{"list other port", []string{"https://app.example"}, "https://app.example:8443", false},
		{"list other host", []string{"https://app.example"}, "https://evil.example", false},
		{"list subdomain", []string{"https://app.example"}, "https://x.app.example", false},
		{"list excludes same origin", []string{"https://app.example"}, "same", false},
		{"wildcard any origin", []string{"*"}, "https://anything.example", true},
		{"wildcard same origin", []string{"*"}, "same", true},
		{"wildcard without origin", []string{"*"}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, wsURL := startNode(t, func(cfg *config.Node) { cfg.AllowedOrigins = tc.allowed })
			host := strings.TrimPrefix(strings.TrimSuffix(wsURL, "/ws"), "ws://")

			header := http.Header{}
			switch tc.origin {
			case "":
			case "same":
				header.Set("Origin", "http://"+host)
			case "SAME":
				header.Set("Origin", "HTTP://"+strings.ToUpper(host))
			default:
				header.Set("Origin", tc.origin)
			}
			ws, resp, err := connDial(t, websocket.Dialer{}, wsURL, header)

			if tc.ok {
				require.NoError(t, err)
				connRoundTrip(t, ws)
				assert.Equal(t, 0.0, metricValue(t, wsURL, "wscluster_upgrades_rejected_total", `reason="origin"`))
				return
			}
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Equal(t, 1.0, metricValue(t, wsURL, "wscluster_upgrades_rejected_total", `reason="origin"`))
			assert.Equal(t, 0.0, metricValue(t, wsURL, "wscluster_upgrades_rejected_total", `reason="handshake"`),
				"an origin rejection was also counted as a failed handshake")
		})
	}
}

func TestConnSubprotocol(t *testing.T) {
	_, wsURL := startNode(t, nil)

	accepted := []struct {
		name    string
		offered []string
		want    string
	}{
		{"wscluster.v1", []string{server.Subprotocol}, server.Subprotocol},
		{"none", nil, ""},
		{"other first", []string{"other", server.Subprotocol}, server.Subprotocol},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			ws, resp, err := connDial(t, websocket.Dialer{Subprotocols: tc.offered}, wsURL, nil)
			require.NoError(t, err)
			assert.Equal(t, tc.want, ws.Subprotocol())
			assert.Equal(t, tc.want, resp.Header.Get("Sec-WebSocket-Protocol"))
			connRoundTrip(t, ws)
		})
	}

	t.Run("only other", func(t *testing.T) {
		_, resp, err := connDial(t, websocket.Dialer{Subprotocols: []string{"other"}}, wsURL, nil)
		require.ErrorIs(t, err, websocket.ErrBadHandshake)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Equal(t, 1.0, metricValue(t, wsURL, "wscluster_upgrades_rejected_total", `reason="subprotocol"`))
	})
}

func TestConnPlainHTTPOnWebSocketPath(t *testing.T) {
	_, wsURL := startNode(t, nil)

	resp, err := http.Get(httpURL(wsURL, "/ws"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, 1.0, metricValue(t, wsURL, "wscluster_upgrades_rejected_total", `reason="handshake"`))
}

func TestConnShutdownClosesClients(t *testing.T) {
	node, wsURL := startNode(t, nil)

	// Each client reads in the background, so it replies to the server's
	// close frame and Shutdown need not wait for the close grace.
	closes := make(chan int, 2)
	for range 2 {
		ws := dialRaw(t, wsURL)
		connRoundTrip(t, ws)
		go func() {
			_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
			for {
				_, _, err := ws.ReadMessage()
				if err != nil {
					code := 0
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						code = ce.Code
					}
					closes <- code
					return
				}
			}
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, node.Shutdown(ctx))
	for range 2 {
		select {
		case code := <-closes:
			assert.Equal(t, websocket.CloseGoingAway, code)
		case <-time.After(waitTimeout):
			require.FailNow(t, "a client got no close frame")
		}
	}
	assert.Equal(t, 0.0, metricValue(t, wsURL, "wscluster_connections", ""))

	// A second call is safe and finds nothing left to close.
	require.NoError(t, node.Shutdown(ctx))

	_, resp, err := connDial(t, websocket.Dialer{Subprotocols: []string{server.Subprotocol}}, wsURL, nil)
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, 1.0, metricValue(t, wsURL, "wscluster_upgrades_rejected_total", `reason="shutting_down"`))

	// The operational endpoints keep serving until the process exits.
	health, err := http.Get(httpURL(wsURL, "/healthz"))
	require.NoError(t, err)
	_ = health.Body.Close()
	assert.Equal(t, http.StatusOK, health.StatusCode)
}

func TestConnShutdownBoundedForSilentClient(t *testing.T) {
	node, wsURL := startNode(t, nil)
	raw := connDialSilent(t, wsURL)

	// The silent client never replies to the close frame, so Shutdown
	// waits for the server's close grace of 3 s and then drops it.
	ctx, cancel := context.WithTimeout(context.Background(), server.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	require.NoError(t, node.Shutdown(ctx))
	assert.Less(t, time.Since(start), 5*time.Second)

	assert.Equal(t, websocket.CloseGoingAway, raw.readCloseCode(t))
	assert.Equal(t, 0.0, metricValue(t, wsURL, "wscluster_connections", ""))
}

// connGet sends a GET of path to the node and returns the response with its
// body.
func connGet(t *testing.T, wsURL, path string) (*http.Response, []byte) {
	t.Helper()

	resp, err := http.Get(httpURL(wsURL, path))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func TestConnHealthAndReadiness(t *testing.T) {
	_, wsURL := startNode(t, nil)

	resp, _ := connGet(t, wsURL, "/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	ready, readyBody := connGet(t, wsURL, "/readyz")
	assert.Equal(t, http.StatusOK, ready.StatusCode)
	assert.Equal(t, "application/json", ready.Header.Get("Content-Type"))
	_, clusterBody := connGet(t, wsURL, "/cluster")
	assert.JSONEq(t, string(clusterBody), string(readyBody))
}

func TestConnClusterDocument(t *testing.T) {
	_, wsURL := startNode(t, func(cfg *config.Node) { cfg.NodeID = "node-7" })

	resp, body := connGet(t, wsURL, "/cluster")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &doc), "body: %s", body)
	keys := make([]string, 0, len(doc))
	for key := range doc {
		keys = append(keys, key)
	}
	assert.ElementsMatch(t, []string{"node_id", "engine", "ready", "connected_peers", "peers"}, keys)

	assert.JSONEq(t, `"node-7"`, string(doc["node_id"]))
	assert.JSONEq(t, `"none"`, string(doc["engine"]))
	assert.JSONEq(t, `true`, string(doc["ready"]))
	assert.JSONEq(t, `0`, string(doc["connected_peers"]))
	assert.Equal(t, `[]`, string(doc["peers"]), "peers must be an empty array, not null")
}

func TestConnMetricsEndpoint(t *testing.T) {
	_, wsURL := startNode(t, nil)
	acceptedBefore := metricValue(t, wsURL, "wscluster_connections_accepted_total", "")
	connRoundTrip(t, dialRaw(t, wsURL))
	connWaitMetric(t, wsURL, "wscluster_connections", "", 1)

	resp, body := connGet(t, wsURL, "/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"),
		"Content-Type %q is not the Prometheus text format", resp.Header.Get("Content-Type"))

	lines := strings.Split(string(body), "\n")
	assert.Contains(t, lines, "# TYPE wscluster_connections gauge")
	assert.Contains(t, lines, "wscluster_connections 1")
	assert.Contains(t, lines, "# TYPE wscluster_connections_accepted_total counter")
	assert.Contains(t, lines, "wscluster_connections_accepted_total "+strconv.FormatFloat(acceptedBefore+1, 'g', -1, 64))
}
