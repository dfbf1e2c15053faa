package mesh

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/wscluster/wscluster/cluster/wire"
)

// FuzzHandshake feeds arbitrary bytes to the parser of a peer's hello. It
// must never panic, and a hello it accepts must encode to the same bytes.
func FuzzHandshake(f *testing.F) {
	valid := appendHello(nil, &hello{version: protocolVersion, nodeID: "node-a", incarnation: 7, addr: "127.0.0.1:5410"})
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add([]byte("WSCL"))
	f.Add([]byte("WSCL\x02"))
	f.Add([]byte("WSCL\x01\xff"))
	f.Add(appendHello(nil, &hello{version: protocolVersion, nodeID: "a", addr: "[::1]:1"}))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, raw, err := readHello(bytes.NewReader(data))
		if err != nil {
			return
		}
		if !validNodeID(h.nodeID) || !validAddr(h.addr) {
			t.Fatalf("accepted invalid hello %+v", h)
		}
		if again := appendHello(nil, h); !bytes.Equal(again, raw) || !bytes.Equal(raw, data[:len(raw)]) {
			t.Fatalf("hello %+v does not encode to the bytes read", h)
		}
	})
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and the envelope
// decoder as a link reads them after the handshake. It must never panic
// and never return a frame over the limit.
func FuzzReadFrame(f *testing.F) {
	const maxBytes = 1024
	frame := func(payload []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
	}
	heartbeat := wire.Append(nil, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "a", Incarnation: 1})
	peers := wire.Append(nil, &wire.Envelope{Kind: wire.KindPeers, Origin: "a", Incarnation: 1, Peers: []string{"127.0.0.1:1"}})
	f.Add(frame(heartbeat))
	f.Add(append(frame(nil), frame(peers)...))
	f.Add(frame([]byte("garbage")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 4, 1})
	f.Add(frame(heartbeat)[:5])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for {
			payload, err := readFrame(r, &buf, maxBytes)
			if err != nil {
				return
			}
			if len(payload) > maxBytes {
				t.Fatalf("frame of %d bytes over the limit of %d", len(payload), maxBytes)
			}
			if env, err := wire.Decode(payload); err == nil && env.Kind == wire.KindPeers {
				for _, addr := range env.Peers {
					_ = validAddr(addr)
					_ = normalizeAddr(addr)
				}
			}
		}
	})
}
