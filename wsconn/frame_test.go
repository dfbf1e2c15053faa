package wsconn

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// websocketGUID is the fixed string of the Sec-WebSocket-Accept computation
// (RFC 6455, section 1.3).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// pipeTimeout bounds every read of a test, so a frame the reader cannot
// parse fails the test instead of hanging it.
const pipeTimeout = 5 * time.Second

// dialPipe connects a gorilla client to a hand-written server over net.Pipe.
// The server completes the handshake, writes frames in order and then
// drains whatever the client sends, such as its reply to a close frame.
func dialPipe(t *testing.T, frames ...[]byte) *websocket.Conn {
	t.Helper()
	clientEnd, serverEnd := net.Pipe()
	t.Cleanup(func() {
		_ = clientEnd.Close()
		_ = serverEnd.Close()
	})

	serverDone := make(chan error, 1)
	go func() { serverDone <- servePipe(serverEnd, frames) }()

	dialer := websocket.Dialer{
		NetDialContext: func(context.Context, string, string) (net.Conn, error) {
			return clientEnd, nil
		},
		HandshakeTimeout: pipeTimeout,
	}
	ws, resp, err := dialer.Dial("ws://pipe.test/ws", nil)
	require.NoError(t, err, "handshake over net.Pipe failed")
	_ = resp.Body.Close()
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(pipeTimeout)))

	t.Cleanup(func() {
		_ = clientEnd.Close()
		err := <-serverDone
		if err != nil && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, io.EOF) {
			t.Errorf("pipe server: %v", err)
		}
	})
	return ws
}

// servePipe completes one WebSocket handshake on conn and writes frames.
func servePipe(conn net.Conn, frames [][]byte) error {
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}

	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + websocketGUID))
	response := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if _, err := io.WriteString(conn, response); err != nil {
		return err
	}
	for _, frame := range frames {
		if _, err := conn.Write(frame); err != nil {
			return err
		}
	}

	// net.Pipe has no buffer, so the client's writes block until read.
	_, err = io.Copy(io.Discard, br)
	return err
}

// patternPayload returns n bytes of printable ASCII that differ from one
// position to the next, so a shifted or truncated payload cannot compare
// equal.
func patternPayload(n int) []byte {
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	return payload
}

func TestTextFrameReadByGorilla(t *testing.T) {
	// The sizes cover every length encoding: 7-bit up to 125, 16-bit from
	// 126 to 65535 and 64-bit above.
	sizes := []int{0, 1, 125, 126, 65535, 65536, 70000}
	for _, size := range sizes {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			payload := patternPayload(size)
			ws := dialPipe(t, TextFrame(payload))

			kind, got, err := ws.ReadMessage()
			require.NoError(t, err)
			assert.Equal(t, websocket.TextMessage, kind)
			assert.Equal(t, size, len(got))
			assert.Equal(t, payload, got)
		})
	}
}

func TestTextFrameHeaderBytes(t *testing.T) {
	cases := []struct {
		size   int
		header []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xFF, 0xFF}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tc := range cases {
		frame := TextFrame(patternPayload(tc.size))
		assert.Equal(t, tc.header, frame[:len(tc.header)], "header of a %d-byte payload", tc.size)
		assert.Equal(t, len(tc.header)+tc.size, len(frame), "length of the %d-byte frame", tc.size)
	}
}

func TestTextFramesBackToBack(t *testing.T) {
	// Frames written one after another on a socket, as the writer's writev
	// batches do, must each be read whole.
	first := patternPayload(126)
	second := []byte(`{"jsonrpc":"2.0","method":"message"}`)
	third := patternPayload(70000)
	ws := dialPipe(t, TextFrame(first), TextFrame(second), TextFrame(third))

	for _, want := range [][]byte{first, second, third} {
		_, got, err := ws.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
}

func TestCloseFrameRoundTrip(t *testing.T) {
	cases := []struct {
		code   int
		reason string
	}{
		{CloseGoingAway, "node shutting down"},
		{CloseSlowConsumer, "slow consumer"},
		{CloseMessageTooBig, "message too big"},
		{CloseNormal, ""},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			ws := dialPipe(t, closeFrame(tc.code, tc.reason))

			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.code, ce.Code)
			assert.Equal(t, tc.reason, ce.Text)
		})
	}
}

func TestCloseFrameLongReasonCut(t *testing.T) {
	reason := string(patternPayload(200))
	frame := closeFrame(CloseSlowConsumer, reason)

	// A control frame carries at most 125 payload bytes, and two of them
	// are the status code.
	assert.Equal(t, byte(maxControlPayload), frame[1])
	assert.Len(t, frame, 2+maxControlPayload)

	ws := dialPipe(t, frame)
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, CloseSlowConsumer, ce.Code)
	assert.Equal(t, reason[:maxControlPayload-2], ce.Text)
}

func TestCloseFrameCutKeepsUTF8(t *testing.T) {
	// RFC 6455 requires the reason to be UTF-8, and gorilla/websocket fails
	// the connection when it is not, so a cut must not split a character.
	reason := strings.Repeat("é", 100)
	frame := closeFrame(CloseGoingAway, reason)
	require.LessOrEqual(t, len(frame)-2, maxControlPayload)
	assert.True(t, utf8.Valid(frame[4:]), "the cut reason is not valid UTF-8")

	ws := dialPipe(t, frame)
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, CloseGoingAway, ce.Code)
	assert.Equal(t, strings.Repeat("é", 61), ce.Text)
}

func TestControlFramePayloadCut(t *testing.T) {
	frame := controlFrame(finPong, patternPayload(200))
	assert.Equal(t, byte(finPong), frame[0])
	assert.Equal(t, byte(maxControlPayload), frame[1])
	assert.Len(t, frame, 2+maxControlPayload)

	assert.Equal(t, []byte{finPing, 0}, pingFrame)
}

func TestPongFrameReadByGorilla(t *testing.T) {
	ws := dialPipe(t, controlFrame(finPong, []byte("payload-1")), TextFrame([]byte("after")))
	pongs := make(chan string, 1)
	ws.SetPongHandler(func(appData string) error {
		pongs <- appData
		return nil
	})

	// The pong handler runs while ReadMessage looks for the next data frame.
	_, got, err := ws.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, "after", string(got))
	select {
	case appData := <-pongs:
		assert.Equal(t, "payload-1", appData)
	default:
		t.Fatal("the pong frame was not seen before the text frame")
	}
}

func TestFinishTextFrameMatchesTextFrame(t *testing.T) {
	for _, size := range []int{0, 125, 126, 65535, 65536, 70000} {
		payload := patternPayload(size)
		buf := append(make([]byte, FrameHeadroom), payload...)
		require.Equal(t, TextFrame(payload), FinishTextFrame(buf), "payload of %d bytes", size)
	}
}
