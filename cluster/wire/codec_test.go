package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

// roundTripCase is an envelope that must decode to itself. Empty Data, Info
// and lists are nil in it, as Decode returns them.
type roundTripCase struct {
	name string
	env  wire.Envelope
}

func entry(channel, member, node, conn, info string) backplane.PresenceEntry {
	return backplane.PresenceEntry{
		Channel: channel,
		Member:  member,
		Node:    node,
		Conn:    conn,
		Info:    nilIfEmpty(info),
	}
}

// nilIfEmpty returns info as JSON, and nil for "" because Decode returns an
// empty value as nil.
func nilIfEmpty(info string) json.RawMessage {
	if info == "" {
		return nil
	}
	return json.RawMessage(info)
}

// roundTripCases covers every kind, with zero values, empty strings and
// lists, extreme numbers and arbitrary bytes as JSON. The fuzz targets use
// it as their seed.
func roundTripCases() []roundTripCase {
	payload := []byte(`{"text":"` + strings.Repeat("x", 300) + `"}`)
	return []roundTripCase{
		{"hello zero", wire.Envelope{Kind: wire.KindHello}},
		{"hello max", wire.Envelope{
			Kind: wire.KindHello, Origin: "node-a", Incarnation: math.MaxUint64,
			ResumeIncarnation: math.MaxUint64, ResumeSeq: 1 << 63, Uptime: math.MaxInt64,
		}},
		{"hello uptime", wire.Envelope{
			Kind: wire.KindHello, Origin: "node-b", Incarnation: 1,
			ResumeIncarnation: 99, ResumeSeq: 12, Uptime: 90 * time.Minute,
		}},
		{"publish qos 0", wire.Envelope{
			Kind: wire.KindPublish, Origin: "node-a", Incarnation: 42, Seq: 1,
			Message: backplane.Message{ID: "m-1", Channel: "chat.room", Data: json.RawMessage(`{"a":1}`)},
		}},
		{"publish qos 1 long data", wire.Envelope{
			Kind: wire.KindPublish, Origin: "node-b", Incarnation: 7, Seq: 300,
			Message: backplane.Message{ID: "m-300", Channel: "news", Data: payload, QoS: 1},
		}},
		{"publish empty strings nil data", wire.Envelope{Kind: wire.KindPublish}},
		{"publish unicode non-json data", wire.Envelope{
			Kind: wire.KindPublish, Origin: "nœud-é", Incarnation: 1, Seq: math.MaxUint64,
			Message: backplane.Message{ID: "id\x00\xff", Channel: "канал", Data: []byte{0, 0xff, '"'}, QoS: 1},
		}},
		{"presence join and leave", wire.Envelope{
			Kind: wire.KindPresence, Origin: "node-a", Incarnation: 9,
			Deltas: []backplane.PresenceDelta{
				{Op: backplane.PresenceJoin, Entry: entry("room", "alice", "node-a", "c-1", `{"n":1}`)},
				{Op: backplane.PresenceLeave, Entry: entry("room", "bob", "node-a", "c-2", `{}`)},
				{Op: backplane.PresenceJoin, Entry: entry("other", "carol", "node-z", "c-3", `{}`)},
			},
		}},
		{"presence empty entry fields", wire.Envelope{
			Kind: wire.KindPresence,
			Deltas: []backplane.PresenceDelta{
				{Op: backplane.PresenceLeave, Entry: backplane.PresenceEntry{}},
			},
		}},
		{"presence no deltas", wire.Envelope{Kind: wire.KindPresence, Origin: "node-a"}},
		{"sync chunk last", wire.Envelope{
			Kind: wire.KindSyncChunk, Origin: "node-a", Incarnation: 3, SyncID: 77, Last: true,
			Entries: []backplane.PresenceEntry{
				entry("room", "alice", "node-a", "c-1", `{"n":1}`),
				entry("room", "bob", "node-a", "c-2", `{}`),
				entry("hall", "bob", "node-b", "c-2", `{}`),
			},
		}},
		{"sync chunk not last", wire.Envelope{
			Kind: wire.KindSyncChunk, Origin: "node-a", SyncID: 1,
			Entries: []backplane.PresenceEntry{entry("", "", "", "", "")},
		}},
		{"sync chunk empty last", wire.Envelope{Kind: wire.KindSyncChunk, SyncID: 2, Last: true}},
		{"sync request", wire.Envelope{Kind: wire.KindSyncRequest, Origin: "node-c", Incarnation: 128}},
		{"heartbeat", wire.Envelope{Kind: wire.KindHeartbeat, Origin: "node-c", Incarnation: 127}},
		{"leave", wire.Envelope{Kind: wire.KindLeave, Origin: "node-c", Incarnation: 16384}},
		{"peers", wire.Envelope{
			Kind: wire.KindPeers, Origin: "node-a", Incarnation: 5,
			Peers: []string{"127.0.0.1:7001", "", "node-b.example:7002"},
		}},
		{"peers none", wire.Envelope{Kind: wire.KindPeers, Origin: "node-a"}},
	}
}

func TestRoundTripEveryKind(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			encoded := wire.Append(nil, &tc.env)

			got, err := wire.Decode(encoded)
			require.NoError(t, err)
			assert.Equal(t, &tc.env, got)
			assert.Equal(t, encoded, wire.Append(nil, got), "re-encoding differs")
		})
	}
}

func TestRoundTripCoversEveryKind(t *testing.T) {
	seen := map[wire.Kind]bool{}
	for _, tc := range roundTripCases() {
		seen[tc.env.Kind] = true
	}
	for kind := wire.KindHello; kind <= wire.KindPeers; kind++ {
		assert.True(t, seen[kind], "no round trip case for %s", kind)
	}
}

func TestPrefixesAreRejected(t *testing.T) {
	for _, tc := range roundTripCases() {
		encoded := wire.Append(nil, &tc.env)
		for n := range len(encoded) {
			got, err := wire.Decode(encoded[:n])
			require.ErrorIs(t, err, wire.ErrMalformed, "%s cut to %d of %d bytes", tc.name, n, len(encoded))
			require.Nil(t, got)
		}
	}
}

func TestAppendGoldenPublish(t *testing.T) {
	env := wire.Envelope{
		Kind: wire.KindPublish, Origin: "n1", Incarnation: 300, Seq: 2,
		Message: backplane.Message{ID: "m", Channel: "c", Data: json.RawMessage(`{}`), QoS: 1},
	}
	want := []byte{
		wire.Version, byte(wire.KindPublish),
		2, 'n', '1', // Origin
		0xac, 0x02, // Incarnation 300
		2,      // Seq
		1, 'm', // ID
		1, 'c', // Channel
		2, '{', '}', // Data
		1, // QoS
	}

	assert.Equal(t, want, wire.Append(nil, &env))
}

func TestAppendKeepsDst(t *testing.T) {
	env := wire.Envelope{Kind: wire.KindHeartbeat, Origin: "n1", Incarnation: 1}
	prefix := []byte("frame:")

	out := wire.Append(bytes.Clone(prefix), &env)

	assert.Equal(t, prefix, out[:len(prefix)])
	assert.Equal(t, wire.Append(nil, &env), out[len(prefix):])
}

func TestAppendIgnoresFieldsOfOtherKinds(t *testing.T) {
	env := wire.Envelope{
		Kind: wire.KindHeartbeat, Origin: "n1", Incarnation: 1,
		Seq: 5, SyncID: 6, Last: true, ResumeSeq: 7, Peers: []string{"x"},
		Message: backplane.Message{ID: "m", Data: json.RawMessage(`1`)},
	}

	got, err := wire.Decode(wire.Append(nil, &env))

	require.NoError(t, err)
	assert.Equal(t, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "n1", Incarnation: 1}, got)
}

func TestAppendAllocations(t *testing.T) {
	for _, tc := range roundTripCases() {
		size := len(wire.Append(nil, &tc.env))
		roomy := make([]byte, 0, size)
		tight := make([]byte, 0, size-1)

		withRoom := testing.AllocsPerRun(50, func() { wire.Append(roomy, &tc.env) })
		withoutRoom := testing.AllocsPerRun(50, func() { wire.Append(tight, &tc.env) })

		assert.Zero(t, withRoom, "%s: allocations when dst has room", tc.name)
		assert.Equal(t, 1.0, withoutRoom, "%s: allocations when dst is too small", tc.name)
	}
}

// uv returns the minimal unsigned varint of x.
func uv(x uint64) []byte {
	return binary.AppendUvarint(nil, x)
}

func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// header returns the encoded version, kind, empty Origin and zero
// Incarnation.
func header(kind wire.Kind) []byte {
	return []byte{wire.Version, byte(kind), 0, 0}
}

func encode(env wire.Envelope) []byte {
	return wire.Append(nil, &env)
}

func TestDecodeRejects(t *testing.T) {
	oneDelta := []byte{byte(backplane.PresenceJoin), 0, 0, 0, 0, 0}
	cases := []struct {
		name    string
		input   []byte
		wantErr string
	}{
		{"empty input", nil, "truncated version"},
		{"version 0", []byte{0, byte(wire.KindHeartbeat), 0, 0}, "unsupported version 0"},
		{"version 2", []byte{2, byte(wire.KindHeartbeat), 0, 0}, "unsupported version 2"},
		{"kind missing", []byte{wire.Version}, "truncated kind"},
		{"kind 0", header(0), "unknown kind 0"},
		{"kind 9", header(9), "unknown kind 9 at offset 1"},
		{"trailing byte", append(header(wire.KindHeartbeat), 0), "1 trailing bytes at offset 4"},
		{"trailing bytes after publish", append(encode(wire.Envelope{Kind: wire.KindPublish}), 1, 2), "2 trailing bytes"},
		{"qos 2", encode(wire.Envelope{Kind: wire.KindPublish, Message: backplane.Message{QoS: 2}}), "invalid qos 2"},
		{"qos negative", encode(wire.Envelope{Kind: wire.KindPublish, Message: backplane.Message{QoS: -1}}), "invalid qos"},
		{"presence op 0", encode(wire.Envelope{
			Kind: wire.KindPresence, Deltas: []backplane.PresenceDelta{{Op: 0}},
		}), "invalid presence op 0"},
		{"presence op 3", encode(wire.Envelope{
			Kind: wire.KindPresence, Deltas: []backplane.PresenceDelta{{Op: 3}},
		}), "invalid presence op 3"},
		{"last byte 2", concat(header(wire.KindSyncChunk), uv(7), []byte{2}, uv(0)), "invalid last byte 2"},
		{"delta count above bytes left", concat(header(wire.KindPresence), uv(2), oneDelta), "delta count 2 exceeds"},
		{"entry count huge", concat(header(wire.KindSyncChunk), uv(1), []byte{1}, uv(1<<62)), "entry count 4611686018427387904 exceeds"},
		{"peer count above bytes left", concat(header(wire.KindPeers), uv(3), uv(0), uv(0)), "peer count 3 exceeds"},
		{"origin length above bytes left", concat([]byte{wire.Version, byte(wire.KindLeave)}, uv(5), []byte("abc")), "origin length 5 exceeds the 3 bytes left at offset 2"},
		{"origin length max", concat([]byte{wire.Version, byte(wire.KindLeave)}, uv(math.MaxUint64)), "origin length 18446744073709551615 exceeds"},
		{"data length above bytes left", concat(header(wire.KindPublish), uv(1), uv(0), uv(0), uv(4), []byte("{}")), "data length 4 exceeds"},
		{"non-minimal incarnation", []byte{wire.Version, byte(wire.KindHeartbeat), 0, 0x80, 0x00}, "non-minimal varint in incarnation"},
		{"non-minimal length", []byte{wire.Version, byte(wire.KindHeartbeat), 0x81, 0x00, 'x', 0}, "non-minimal varint in origin length"},
		{"uptime negative", encode(wire.Envelope{Kind: wire.KindHello, Uptime: -time.Second}), "invalid uptime"},
		{"varint overflow", concat(header(wire.KindHello), bytes.Repeat([]byte{0xff}, 11)), "resume incarnation overflows 64 bits"},
		{"truncated varint", []byte{wire.Version, byte(wire.KindHeartbeat), 0, 0x80}, "truncated incarnation"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.Decode(tc.input)

			require.ErrorIs(t, err, wire.ErrMalformed)
			assert.ErrorContains(t, err, tc.wantErr)
			assert.Nil(t, got)
		})
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			buf := wire.Append(nil, &tc.env)
			got, err := wire.Decode(buf)
			require.NoError(t, err)

			// Overwrite the read buffer as a caller reusing it would.
			for i := range buf {
				buf[i] = 0xa5
			}

			assert.Equal(t, &tc.env, got)
		})
	}
}

func TestDecodeInfoAppendIsolated(t *testing.T) {
	env := wire.Envelope{
		Kind: wire.KindSyncChunk, Origin: "node-a",
		Entries: []backplane.PresenceEntry{
			entry("room", "alice", "node-a", "c-1", `{"x":1}`),
			entry("room", "bob", "node-a", "c-2", `{"x":2}`),
		},
	}
	buf := wire.Append(nil, &env)

	got, err := wire.Decode(buf)
	require.NoError(t, err)

	// Appending to one Info must not overwrite bytes that another field
	// still uses.
	first := got.Entries[0].Info
	_ = append(first, `garbage`...)
	assert.Equal(t, json.RawMessage(`{"x":2}`), got.Entries[1].Info)
	assert.Equal(t, "bob", got.Entries[1].Member)
}

func TestDecodeAllocationCount(t *testing.T) {
	publish := wire.Append(nil, publishEnvelope(64))
	var entries []backplane.PresenceEntry
	for range 10 {
		entries = append(entries, entry("room", "", "node-a", "", `{}`))
	}
	chunk := wire.Append(nil, &wire.Envelope{Kind: wire.KindSyncChunk, Origin: "node-a", Entries: entries})

	publishAllocs := testing.AllocsPerRun(50, func() { _, _ = wire.Decode(publish) })
	chunkAllocs := testing.AllocsPerRun(50, func() { _, _ = wire.Decode(chunk) })

	// Envelope, Origin, ID, Channel and Data.
	assert.Equal(t, 5.0, publishAllocs, "publish")
	// Envelope, Origin, the Entries slice, the first Channel and one Info
	// per entry, because later entries reuse Channel and Node.
	assert.Equal(t, 14.0, chunkAllocs, "sync chunk")
}

// allocatedBytes returns the heap bytes that fn allocates per run, on one
// processor as testing.AllocsPerRun measures, to keep other goroutines out.
func allocatedBytes(runs int, fn func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	fn()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		fn()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func TestDecodeAllocationBounded(t *testing.T) {
	const items = 10000
	emptyEntries := bytes.Repeat([]byte{0}, items*5)
	emptyDeltas := bytes.Repeat([]byte{byte(backplane.PresenceJoin), 0, 0, 0, 0, 0}, items)
	cases := []struct {
		name  string
		input []byte
	}{
		{"empty entries", concat(header(wire.KindSyncChunk), uv(1), []byte{1}, uv(items), emptyEntries)},
		{"empty deltas", concat(header(wire.KindPresence), uv(items), emptyDeltas)},
		{"empty peers", concat(header(wire.KindPeers), uv(items), bytes.Repeat([]byte{0}, items))},
		{"large data", wire.Append(nil, publishEnvelope(64*1024))},
		{"hostile count", concat(header(wire.KindPeers), uv(1<<40), []byte{0})},
		{"hostile length", concat([]byte{wire.Version, byte(wire.KindLeave)}, uv(1<<40), []byte("abc"))},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			allocated := allocatedBytes(20, func() { _, _ = wire.Decode(tc.input) })

			// The densest input is a list of empty entries at 88 bytes of
			// PresenceEntry per 5 input bytes, and the constant covers the
			// Envelope and an error.
			limit := 18*uint64(len(tc.input)) + 4096
			assert.LessOrEqual(t, allocated, limit, "allocated bytes for %d input bytes", len(tc.input))
		})
	}
}

func publishEnvelope(payloadSize int) *wire.Envelope {
	data := make([]byte, payloadSize)
	data[0], data[payloadSize-1] = '"', '"'
	for i := 1; i < payloadSize-1; i++ {
		data[i] = 'a' + byte(i%26)
	}
	return &wire.Envelope{
		Kind: wire.KindPublish, Origin: "node-01", Incarnation: 0x1234_5678_9abc_def0, Seq: 123456,
		Message: backplane.Message{ID: "node-01-0000000000123456", Channel: "chat.lobby", Data: data, QoS: 1},
	}
}

var benchmarkPayloads = []struct {
	name string
	size int
}{
	{"64B", 64},
	{"4KiB", 4096},
}

func BenchmarkAppendPublish(b *testing.B) {
	for _, payload := range benchmarkPayloads {
		b.Run(payload.name, func(b *testing.B) {
			env := publishEnvelope(payload.size)
			buf := wire.Append(nil, env)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = wire.Append(buf[:0], env)
			}
		})
	}
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, payload := range benchmarkPayloads {
		b.Run(payload.name, func(b *testing.B) {
			buf := wire.Append(nil, publishEnvelope(payload.size))
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
