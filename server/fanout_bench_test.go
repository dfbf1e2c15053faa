package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// BenchmarkFanout measures the fan-out path end to end on loopback: one
// publish encoded once, queued to every subscriber of a node and written
// to their sockets in batches. One op is one delivered message; the
// subscribers are gorilla/websocket clients in the same process, so their
// reads are part of the time. Compare runs with benchstat.
//
//	go test -run '^$' -bench Fanout -benchtime 200000x -count 10 ./server
func BenchmarkFanout(b *testing.B) {
	for _, subscribers := range []int{100, 1000} {
		for _, size := range []int{64, 4096} {
			b.Run(fmt.Sprintf("%dsubs/%dB", subscribers, size), func(b *testing.B) {
				benchmarkFanout(b, subscribers, size)
			})
		}
	}
}

func benchmarkFanout(b *testing.B, subscribers, size int) {
	node, wsURL := benchNode(b)
	var received atomic.Int64
	var readers sync.WaitGroup
	for range subscribers {
		ws := benchSubscriber(b, wsURL, "fanout")
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	data := json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`)
	publishes := max(1, b.N/subscribers)
	b.SetBytes(int64(size))
	b.ResetTimer()

	// Publishing waits whenever the subscribers fall 64 publishes behind,
	// so that no queue overflows into a slow-consumer close.
	for i := range publishes {
		for int64(i-64)*int64(subscribers) > received.Load() {
			time.Sleep(50 * time.Microsecond)
		}
		if _, err := node.PubSub().Publish(context.Background(), "fanout", data, 0); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(publishes * subscribers)
	deadline := time.Now().Add(time.Minute)
	for received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d deliveries", received.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func benchNode(b *testing.B) (*server.Node, string) {
	b.Helper()
	cfg := config.Default()
	cfg.NodeID = "n1"
	node, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(node.Handler())
	b.Cleanup(ts.Close)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = node.Shutdown(ctx)
	})
	return node, "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// benchSubscriber dials wsURL and subscribes to channel.
func benchSubscriber(b *testing.B, wsURL, channel string) *websocket.Conn {
	b.Helper()
	dialer := websocket.Dialer{Subprotocols: []string{server.Subprotocol}, HandshakeTimeout: waitTimeout}
	ws, resp, err := dialer.Dial(wsURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
	b.Cleanup(func() { _ = ws.Close() })
	request := `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"` + channel + `"}}`
	if err := ws.WriteMessage(websocket.TextMessage, []byte(request)); err != nil {
		b.Fatal(err)
	}
	if _, reply, err := ws.ReadMessage(); err != nil || !strings.Contains(string(reply), `"result"`) {
		b.Fatalf("subscribe failed: %s %v", reply, err)
	}
	return ws
}
