package wire_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// FuzzDecode checks that Decode never panics, that every error wraps
// ErrMalformed, and that the encoding is canonical: whatever decodes
// re-encodes to exactly the input.
func FuzzDecode(f *testing.F) {
	for _, tc := range roundTripCases() {
		f.Add(wire.Append(nil, &tc.env))
	}

	f.Fuzz(func(t *testing.T, input []byte) {
		env, err := wire.Decode(input)
		if err != nil {
			require.ErrorIs(t, err, wire.ErrMalformed)
			require.Nil(t, env)
			return
		}

		require.Equal(t, input, wire.Append(nil, env), "re-encoding differs from the input")
	})
}

// FuzzRoundTrip builds an envelope of any kind from the fuzzer's values and
// checks that it decodes to itself.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(wire.KindPublish), "node-a", uint64(1), uint64(2), "m-1", "room", "c-1", []byte(`{"a":1}`), uint8(1), uint8(0))
	f.Add(uint8(wire.KindPresence), "node-a", uint64(1<<40), uint64(0), "room", "alice", "node-a", []byte(`{}`), uint8(0b101), uint8(3))
	f.Add(uint8(wire.KindSyncChunk), "", uint64(0), uint64(1<<63), "", "", "", []byte(nil), uint8(1), uint8(7))
	f.Add(uint8(wire.KindHello), "node-z", uint64(1<<63), uint64(300), "", "", "", []byte(nil), uint8(0), uint8(0))
	f.Add(uint8(wire.KindPeers), "node-a", uint64(5), uint64(0), "127.0.0.1:7001", "", "", []byte(nil), uint8(0), uint8(4))

	f.Fuzz(func(t *testing.T, kind uint8, origin string, incarnation, number uint64,
		s1, s2, s3 string, data []byte, flags, count uint8,
	) {
		env := buildEnvelope(wire.Kind(kind%8+1), origin, incarnation, number, s1, s2, s3, data, flags, count)

		encoded := wire.Append(nil, env)
		got, err := wire.Decode(encoded)

		require.NoError(t, err)
		require.Equal(t, env, got)
	})
}

// buildEnvelope fills the fields of kind from the fuzzer's values, with
// empty Data, Info and lists as nil because Decode returns them so. Bits of
// flags choose QoS, Last and each delta's Op, and count sets the list
// lengths.
func buildEnvelope(kind wire.Kind, origin string, incarnation, number uint64,
	s1, s2, s3 string, data []byte, flags, count uint8,
) *wire.Envelope {
	env := &wire.Envelope{Kind: kind, Origin: origin, Incarnation: incarnation}
	n := int(count % 8)

	switch kind {
	case wire.KindHello:
		env.ResumeIncarnation = number
		env.ResumeSeq = number ^ incarnation
		env.Uptime = time.Duration(number >> 1)
	case wire.KindPublish:
		env.Seq = number
		env.Message = backplane.Message{ID: s1, Channel: s2, Data: nilIfEmpty(string(data)), QoS: int(flags & 1)}
	case wire.KindPresence:
		for i := range n {
			op := backplane.PresenceJoin + backplane.PresenceOp(flags>>i&1)
			entry := fuzzEntry(i, s1, s2, s3, data)
			env.Deltas = append(env.Deltas, backplane.PresenceDelta{Op: op, Entry: entry})
		}
	case wire.KindSyncChunk:
		env.SyncID = number
		env.Last = flags&1 == 1
		for i := range n {
			env.Entries = append(env.Entries, fuzzEntry(i, s1, s2, s3, data))
		}
	case wire.KindPeers:
		for i := range n {
			env.Peers = append(env.Peers, fmt.Sprintf("%s%d", s1, i))
		}
	}
	return env
}

// fuzzEntry varies the entry with i, so that consecutive entries share a
// Channel on even i and differ on odd i.
func fuzzEntry(i int, channel, member, node string, info []byte) backplane.PresenceEntry {
	if i%2 == 1 {
		channel += "/odd"
	}
	return backplane.PresenceEntry{
		Channel: channel,
		Member:  fmt.Sprintf("%s-%d", member, i),
		Node:    node,
		Conn:    fmt.Sprintf("c-%d", i),
		Info:    nilIfEmpty(string(info)),
	}
}
