package wsconn

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readTestServer upgrades every request, serves it with ReadLoop and passes
// each message it reads on messages.
type readTestServer struct {
	srv      *httptest.Server
	messages chan []byte
	cfg      Config
}

func startReadServer(t *testing.T, withTLS bool, cfg Config) *readTestServer {
	t.Helper()
	cfg.CloseGrace = time.Second
	rs := &readTestServer{messages: make(chan []byte, 1024), cfg: cfg.WithDefaults()}
	upgrader := websocket.Upgrader{}
	rs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := New("test", ws, &rs.cfg, slog.New(slog.DiscardHandler))
		c.ReadLoop(func(msg []byte) { rs.messages <- msg })
	}))
	if withTLS {
		rs.srv.StartTLS()
	} else {
		rs.srv.Start()
	}
	t.Cleanup(rs.srv.Close)
	return rs
}

// rawClient writes hand-made frames and reads the server's frames.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (rs *readTestServer) dial(t *testing.T) *rawClient {
	t.Helper()
	addr := rs.srv.Listener.Addr().String()
	var conn net.Conn
	var err error
	if rs.srv.TLS != nil {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(pipeTimeout)))

	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+addr+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return &rawClient{t: t, conn: conn, br: br}
}

// clientFrame builds a frame with the given first byte, masked with a fixed
// key unless unmasked is set.
func clientFrame(first byte, payload []byte, unmasked bool) []byte {
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	frame := []byte{first}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, maskBit|byte(n))
	case n <= 0xFFFF:
		frame = append(frame, maskBit|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(n))
	default:
		frame = append(frame, maskBit|127)
		frame = binary.BigEndian.AppendUint64(frame, uint64(n))
	}
	if unmasked {
		return append(frame, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	frame = append(frame, key[:]...)
	for i, b := range payload {
		frame = append(frame, b^key[i%4])
	}
	return frame
}

func textFrame(payload string) []byte { return clientFrame(0x80|opText, []byte(payload), false) }

func (rc *rawClient) write(frames ...[]byte) {
	rc.t.Helper()
	_, err := rc.conn.Write(bytes.Join(frames, nil))
	require.NoError(rc.t, err)
}

// readFrame reads one unmasked server frame.
func (rc *rawClient) readFrame() (byte, []byte) {
	rc.t.Helper()
	var head [2]byte
	_, err := io.ReadFull(rc.br, head[:])
	require.NoError(rc.t, err)
	n := int(head[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		_, err = io.ReadFull(rc.br, ext[:])
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		_, err = io.ReadFull(rc.br, ext[:])
		n = int(binary.BigEndian.Uint64(ext[:]))
	}
	require.NoError(rc.t, err)
	payload := make([]byte, n)
	_, err = io.ReadFull(rc.br, payload)
	require.NoError(rc.t, err)
	return head[0] & 0x0F, payload
}

// readCloseCode reads frames until the server's close frame and returns
// its status code.
func (rc *rawClient) readCloseCode() int {
	rc.t.Helper()
	for {
		op, payload := rc.readFrame()
		if op == opClose {
			require.GreaterOrEqual(rc.t, len(payload), 2, "close frame without a status code")
			return int(binary.BigEndian.Uint16(payload))
		}
	}
}

func (rs *readTestServer) next(t *testing.T) string {
	t.Helper()
	select {
	case msg := <-rs.messages:
		return string(msg)
	case <-time.After(pipeTimeout):
		t.Fatal("no message reached the handler")
		return ""
	}
}

func TestReadFragmentedMessageWithPing(t *testing.T) {
	rs := startReadServer(t, false, Config{})
	rc := rs.dial(t)

	// A ping between the fragments gets its pong at once, and the message
	// arrives whole.
	rc.write(clientFrame(opText, []byte("hel"), false),
		clientFrame(0x80|opPing, []byte("p1"), false),
		clientFrame(0x80|opContinuation, []byte("lo"), false))
	op, payload := rc.readFrame()
	assert.Equal(t, byte(opPong), op)
	assert.Equal(t, "p1", string(payload))
	assert.Equal(t, "hello", rs.next(t))
}

func TestReadFrameSplitAcrossWrites(t *testing.T) {
	rs := startReadServer(t, false, Config{})
	rc := rs.dial(t)

	frame := textFrame(`{"a":1}`)
	for _, b := range frame {
		rc.write([]byte{b})
		time.Sleep(time.Millisecond)
	}
	assert.Equal(t, `{"a":1}`, rs.next(t))
}

func TestReadManyFramesInOneWrite(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		name := "tcp"
		if withTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			rs := startReadServer(t, withTLS, Config{})
			rc := rs.dial(t)

			// 500 frames of 70 bytes span several read chunks, so frames
			// cut at a chunk's end must be completed by the next read.
			var frames [][]byte
			for i := range 500 {
				frames = append(frames, textFrame(strings.Repeat("x", 60)+string(rune('a'+i%26))))
			}
			rc.write(frames...)
			for i := range 500 {
				require.Equal(t, strings.Repeat("x", 60)+string(rune('a'+i%26)), rs.next(t), "message %d", i)
			}
		})
	}
}

func TestReadMessageLargerThanChunk(t *testing.T) {
	rs := startReadServer(t, false, Config{MaxMessageBytes: 256 << 10})
	rc := rs.dial(t)

	big := strings.Repeat("0123456789", 20<<10)
	rc.write(textFrame(big), textFrame("after"))
	assert.Equal(t, big, rs.next(t))
	assert.Equal(t, "after", rs.next(t))
}

func TestReadBadInputCloseCodes(t *testing.T) {
	cases := []struct {
		name   string
		frames [][]byte
		code   int
	}{
		{"binary", [][]byte{clientFrame(0x80|opBinary, []byte("b"), false)}, CloseUnsupportedData},
		{"invalid utf-8", [][]byte{clientFrame(0x80|opText, []byte{0xff, 0xfe}, false)}, CloseInvalidPayload},
		{"frame over the limit", [][]byte{clientFrame(0x80|opText, bytes.Repeat([]byte("a"), 2000), false)}, CloseMessageTooBig},
		{"fragments over the limit", [][]byte{
			clientFrame(opText, bytes.Repeat([]byte("a"), 600), false),
			clientFrame(0x80|opContinuation, bytes.Repeat([]byte("a"), 600), false)}, CloseMessageTooBig},
		{"unmasked", [][]byte{clientFrame(0x80|opText, []byte("x"), true)}, CloseProtocolError},
		{"reserved bit", [][]byte{clientFrame(0xC0|opText, []byte("x"), false)}, CloseProtocolError},
		{"unknown opcode", [][]byte{clientFrame(0x80|0x3, []byte("x"), false)}, CloseProtocolError},
		{"long ping", [][]byte{clientFrame(0x80|opPing, bytes.Repeat([]byte("p"), 126), false)}, CloseProtocolError},
		{"fragmented ping", [][]byte{clientFrame(opPing, []byte("p"), false)}, CloseProtocolError},
		{"lone continuation", [][]byte{clientFrame(0x80|opContinuation, []byte("x"), false)}, CloseProtocolError},
		{"text inside a message", [][]byte{clientFrame(opText, []byte("a"), false), textFrame("b")}, CloseProtocolError},
		{"close with one byte", [][]byte{clientFrame(0x80|opClose, []byte{3}, false)}, CloseProtocolError},
		{"close with code 1005", [][]byte{clientFrame(0x80|opClose, []byte{0x03, 0xED}, false)}, CloseProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := startReadServer(t, false, Config{MaxMessageBytes: 1024})
			rc := rs.dial(t)
			rc.write(tc.frames...)
			assert.Equal(t, tc.code, rc.readCloseCode())
			assert.Empty(t, rs.messages, "no message may reach the handler")
		})
	}
}

func TestReadHugeFrameRefusedUnbuffered(t *testing.T) {
	rs := startReadServer(t, false, Config{MaxMessageBytes: 1024})
	rc := rs.dial(t)

	// The header claims 1 GiB. The server must close from the header
	// alone, then skip what follows until the client's close frame.
	header := []byte{0x80 | opText, 0x80 | 127}
	header = binary.BigEndian.AppendUint64(header, 1<<30)
	header = append(header, 1, 2, 3, 4)
	rc.write(header, bytes.Repeat([]byte("z"), 4096))
	assert.Equal(t, CloseMessageTooBig, rc.readCloseCode())
}

func TestReadClientCloseEchoed(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		code    int
	}{
		{"application code", []byte{0x0F, 0xA0, 'b', 'y', 'e'}, 4000},
		{"no status code", nil, CloseNormal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := startReadServer(t, false, Config{})
			rc := rs.dial(t)
			rc.write(clientFrame(0x80|opClose, tc.payload, false))
			assert.Equal(t, tc.code, rc.readCloseCode())
		})
	}
}

func TestUnmaskMatchesBytewise(t *testing.T) {
	key := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	for _, n := range []int{0, 1, 7, 8, 9, 31, 64, 1001} {
		payload := patternPayload(n)
		want := make([]byte, n)
		for i := range payload {
			want[i] = payload[i] ^ key[i%4]
		}
		unmask(key, payload)
		assert.Equal(t, want, payload, "length %d", n)
	}
}
