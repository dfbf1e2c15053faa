package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

func TestDataHasRequestedSizeAndParses(t *testing.T) {
	for _, size := range []int{64, 100, 4096} {
		data := appendData(nil, 1733350000123456789, 7, 42, size)
		assert.Len(t, data, size)
		assert.True(t, json.Valid(data), "data of %d bytes is not JSON: %s", size, data)

		// The stamp is found inside a wscluster message notification.
		msg := []byte(`{"jsonrpc":"2.0","method":"message","params":{"channel":"c","data":` + string(data) + `,"msg_id":"n1:x:1","qos":0}}`)
		s, ok := parseStamp(msg)
		require.True(t, ok)
		assert.Equal(t, stamp{sentNanos: 1733350000123456789, publisher: 7, seq: 42}, s)
	}
}

func TestParseStampRejectsOtherMessages(t *testing.T) {
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"channel":"c"}}`,
		`{"t":}`,
		`{"t":12,"g":x,"s":1,"x":""}`,
		`{"t":12,"g":1,"s":1}`,
	} {
		_, ok := parseStamp([]byte(msg))
		assert.False(t, ok, "message %s", msg)
	}
}

func TestCentrifugeSplitAndPing(t *testing.T) {
	d := centrifugeDialect{}
	var got []string
	frame := []byte("{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"t\":1}}}}\n{}\n{\"id\":3,\"publish\":{}}")
	require.NoError(t, d.split(frame, func(msg []byte) error {
		got = append(got, string(msg))
		return nil
	}))
	assert.Equal(t, []string{`{"push":{"channel":"c","pub":{"data":{"t":1}}}}`, `{}`, `{"id":3,"publish":{}}`}, got)
	assert.Equal(t, `{"id":9,"publish":{"channel":"c","data":{"a":1}}}`, string(d.publish(nil, 9, "c", []byte(`{"a":1}`))))
}

func TestConfigValidation(t *testing.T) {
	base := Config{Protocol: ProtocolWSCluster, Mode: ModeFanout, PublishURLs: []string{"ws://127.0.0.1:1/ws"},
		SubscribeURLs: []string{"ws://127.0.0.1:1/ws"}, Channels: 1, SubscribersPerChannel: 1, PayloadBytes: 64, Duration: time.Second}
	valid := base
	require.NoError(t, valid.Validate())

	cases := map[string]func(*Config){
		"unknown protocol": func(c *Config) { c.Protocol = "mqtt" },
		"unknown mode":     func(c *Config) { c.Mode = "storm" },
		"small payload":    func(c *Config) { c.PayloadBytes = 10 },
		"no publish URL":   func(c *Config) { c.PublishURLs = nil },
		"no duration":      func(c *Config) { c.Duration = 0 },
		"idle without n":   func(c *Config) { c.Mode = ModeIdle },
	}
	for name, mutate := range cases {
		c := base
		mutate(&c)
		assert.ErrorIs(t, c.Validate(), ErrInvalidConfig, name)
	}
}

// startNode runs a wscluster node in this process on loopback.
func startNode(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.NodeID = "n1"
	node, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ts := httptest.NewServer(node.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = node.Shutdown(ctx)
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// events decodes the event lines a run wrote.
func events(t *testing.T, out string) []Event {
	t.Helper()
	var evs []Event
	scanner := bufio.NewScanner(strings.NewReader(out))
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		var ev Event
		require.NoError(t, json.Unmarshal(scanner.Bytes(), &ev), "line %s", scanner.Text())
		evs = append(evs, ev)
	}
	return evs
}

func TestFanoutAgainstNode(t *testing.T) {
	url := startNode(t)
	for _, rate := range []float64{0, 500} {
		cfg := Config{Protocol: ProtocolWSCluster, Mode: ModeFanout, PublishURLs: []string{url}, SubscribeURLs: []string{url},
			ChannelPrefix: "t-", Channels: 2, SubscribersPerChannel: 5, Rate: rate, PayloadBytes: 256,
			Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond}
		var out bytes.Buffer
		res, err := Run(context.Background(), cfg, strings.NewReader(ControlStart+"\n"), &out)
		require.NoError(t, err, "rate %v", rate)

		assert.Equal(t, 12, res.Conns, "2 publishers and 10 subscribers")
		assert.Positive(t, res.Publishes)
		assert.Equal(t, res.Publishes, res.PublishAcks, "every publish must be acknowledged")
		assert.Equal(t, 5*res.Publishes, res.Expected)
		assert.Equal(t, res.Expected, res.Received, "a node on loopback loses nothing")
		assert.Zero(t, res.Lost)
		assert.Positive(t, res.WindowDelivered)
		assert.NotEmpty(t, res.Latency)
		assert.Positive(t, res.CPUSeconds)

		var names []string
		for _, ev := range events(t, out.String()) {
			names = append(names, ev.Event)
		}
		assert.Equal(t, []string{"ready", "measure-begin", "measure-end", "result"}, names)
	}
}

func TestIdleHoldsConnectionsUntilStop(t *testing.T) {
	url := startNode(t)
	cfg := Config{Protocol: ProtocolWSCluster, Mode: ModeIdle, SubscribeURLs: []string{url}, Channels: 3, IdleConns: 40}
	control, stop := io.Pipe()
	var out syncBuffer
	done := make(chan *Result, 1)
	go func() {
		res, err := Run(context.Background(), cfg, control, &out)
		assert.NoError(t, err)
		done <- res
	}()

	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"ready"`) }, 10*time.Second, 10*time.Millisecond)
	select {
	case <-done:
		t.Fatal("idle run ended before the stop line")
	case <-time.After(100 * time.Millisecond):
	}
	_, err := io.WriteString(stop, ControlStop+"\n")
	require.NoError(t, err)
	res := <-done
	require.NotNil(t, res)
	assert.Equal(t, 40, res.Conns)
	assert.Zero(t, res.Disconnects)
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
