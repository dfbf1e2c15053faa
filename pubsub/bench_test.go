package pubsub

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/wscluster/wscluster/backplane"
)

// BenchmarkEncodeMessage measures the one encoding a publish gets before
// fan-out: the message notification wrapped in a WebSocket frame.
func BenchmarkEncodeMessage(b *testing.B) {
	for _, size := range []int{64, 4096} {
		data := json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`)
		msg := backplane.Message{ID: "n1:1a2b3c:42", Channel: "prices.eur-usd", Data: data, QoS: 0}
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				out := newOutgoing(msg)
				if len(out.frame) < size {
					b.Fatal("frame shorter than its payload")
				}
			}
		})
	}
}
