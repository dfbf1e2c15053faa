package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/wscluster/wscluster/backplane"
)

// Version is the codec version, the first byte of every encoded envelope.
// Decode rejects every other version.
const Version = 1

// ErrMalformed is wrapped by every error that Decode returns. It means the
// input is not an envelope that Append can produce.
var ErrMalformed = errors.New("wire: malformed envelope")

// Smallest encoded sizes in bytes. Decode rejects a count that the bytes
// left cannot hold, because every string and JSON value takes at least its
// one-byte length prefix.
const (
	// minEntrySize covers the five length prefixes of Channel, Member,
	// Node, Conn and Info.
	minEntrySize = 5
	// minDeltaSize is the Op byte plus an entry.
	minDeltaSize = 1 + minEntrySize
	// minPeerSize is the length prefix of one address.
	minPeerSize = 1
)

// Append encodes env and appends it to dst. It grows dst at most once, and
// not at all when dst has room for the encoding.
//
// The encoding is a Version byte, the Kind byte, Origin and Incarnation,
// then the fields of env.Kind in a fixed order. Numbers and lengths are
// unsigned varints, Uptime in nanoseconds, and strings and JSON values are
// length-prefixed bytes. Fields of other kinds are not encoded.
//
// Append does not validate env. Decode rejects what Append produced from an
// unknown Kind, a QoS other than 0 or 1, an Op other than PresenceJoin or
// PresenceLeave, or a negative Uptime.
func Append(dst []byte, env *Envelope) []byte {
	dst = slices.Grow(dst, encodedSize(env))
	dst = append(dst, Version, byte(env.Kind))
	dst = appendString(dst, env.Origin)
	dst = binary.AppendUvarint(dst, env.Incarnation)

	switch env.Kind {
	case KindHello:
		dst = binary.AppendUvarint(dst, env.ResumeIncarnation)
		dst = binary.AppendUvarint(dst, env.ResumeSeq)
		dst = binary.AppendUvarint(dst, uint64(env.Uptime))
	case KindPublish:
		dst = binary.AppendUvarint(dst, env.Seq)
		dst = appendString(dst, env.Message.ID)
		dst = appendString(dst, env.Message.Channel)
		dst = appendBytes(dst, env.Message.Data)
		dst = binary.AppendUvarint(dst, uint64(env.Message.QoS))
	case KindPresence:
		dst = binary.AppendUvarint(dst, uint64(len(env.Deltas)))
		for i := range env.Deltas {
			dst = append(dst, byte(env.Deltas[i].Op))
			dst = appendEntry(dst, &env.Deltas[i].Entry)
		}
	case KindSyncChunk:
		dst = binary.AppendUvarint(dst, env.SyncID)
		dst = append(dst, boolByte(env.Last))
		dst = binary.AppendUvarint(dst, uint64(len(env.Entries)))
		for i := range env.Entries {
			dst = appendEntry(dst, &env.Entries[i])
		}
	case KindPeers:
		dst = binary.AppendUvarint(dst, uint64(len(env.Peers)))
		for _, peer := range env.Peers {
			dst = appendString(dst, peer)
		}
	}
	return dst
}

// encodedSize returns the exact number of bytes Append adds for env, so that
// Append grows its output once.
func encodedSize(env *Envelope) int {
	n := 2 + stringSize(env.Origin) + uvarintSize(env.Incarnation)
	switch env.Kind {
	case KindHello:
		n += uvarintSize(env.ResumeIncarnation) + uvarintSize(env.ResumeSeq)
		n += uvarintSize(uint64(env.Uptime))
	case KindPublish:
		msg := &env.Message
		n += uvarintSize(env.Seq) + stringSize(msg.ID) + stringSize(msg.Channel)
		n += stringSize(msg.Data) + uvarintSize(uint64(msg.QoS))
	case KindPresence:
		n += uvarintSize(uint64(len(env.Deltas)))
		for i := range env.Deltas {
			n += 1 + entrySize(&env.Deltas[i].Entry)
		}
	case KindSyncChunk:
		n += uvarintSize(env.SyncID) + 1 + uvarintSize(uint64(len(env.Entries)))
		for i := range env.Entries {
			n += entrySize(&env.Entries[i])
		}
	case KindPeers:
		n += uvarintSize(uint64(len(env.Peers)))
		for _, peer := range env.Peers {
			n += stringSize(peer)
		}
	}
	return n
}

func appendEntry(dst []byte, e *backplane.PresenceEntry) []byte {
	dst = appendString(dst, e.Channel)
	dst = appendString(dst, e.Member)
	dst = appendString(dst, e.Node)
	dst = appendString(dst, e.Conn)
	return appendBytes(dst, e.Info)
}

func entrySize(e *backplane.PresenceEntry) int {
	return stringSize(e.Channel) + stringSize(e.Member) + stringSize(e.Node) +
		stringSize(e.Conn) + stringSize(e.Info)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// stringSize returns the encoded size of a length-prefixed string or byte
// slice.
func stringSize[T ~string | ~[]byte](s T) int {
	return uvarintSize(uint64(len(s))) + len(s)
}

// uvarintSize returns the number of bytes binary.AppendUvarint writes for x:
// one per started group of 7 bits, and one for zero.
func uvarintSize(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Decode decodes one envelope that fills b exactly. It never panics. It
// checks every length and count against the bytes left in b before it
// allocates, so a hostile length cannot make it allocate more than a fixed
// multiple of len(b): about 18 times for a list of empty presence entries,
// the densest input, plus the Envelope itself.
//
// Decode accepts only the encoding that Append produces, so that
// Append(nil, env) returns b again: it rejects non-minimal varints, a Last
// byte other than 0 or 1, and trailing bytes. Every error wraps
// ErrMalformed.
//
// The returned envelope does not alias b, so the caller may reuse b. An
// empty Data, Info, Deltas, Entries or Peers decodes as nil.
func Decode(b []byte) (*Envelope, error) {
	d := decoder{buf: b}
	env := &Envelope{}
	d.header(env)

	switch env.Kind {
	case KindHello:
		d.hello(env)
	case KindPublish:
		d.publish(env)
	case KindPresence:
		d.presence(env)
	case KindSyncChunk:
		d.syncChunk(env)
	case KindPeers:
		d.peers(env)
	}

	// The envelope must fill b exactly, because a frame or a Pub/Sub
	// message carries exactly one envelope.
	if d.err == nil && d.off != len(d.buf) {
		d.start = d.off
		d.failf("%d trailing bytes", len(d.buf)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return env, nil
}

// decoder reads fields from buf in order. The first error sticks: after it,
// every read returns a zero value without advancing, and counts read as
// zero, so that the kind decoders need no error check after each field.
type decoder struct {
	buf []byte
	off int
	// start is the offset of the field read last, which errors report.
	start int
	err   error
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), d.start)
	}
}

// header reads the fields that every kind starts with.
func (d *decoder) header(env *Envelope) {
	if version := d.byte("version"); d.err == nil && version != Version {
		d.failf("unsupported version %d, expected %d", version, Version)
		return
	}
	env.Kind = Kind(d.byte("kind"))
	if d.err == nil && (env.Kind < KindHello || env.Kind > KindPeers) {
		d.failf("unknown kind %d", env.Kind)
		return
	}
	env.Origin = d.string("origin")
	env.Incarnation = d.uvarint("incarnation")
}

func (d *decoder) hello(env *Envelope) {
	env.ResumeIncarnation = d.uvarint("resume incarnation")
	env.ResumeSeq = d.uvarint("resume seq")

	// A negative Duration would encode above math.MaxInt64, and no node
	// has run for a negative time.
	uptime := d.uvarint("uptime")
	if uptime > math.MaxInt64 {
		d.failf("invalid uptime %d ns, expected at most %d", uptime, int64(math.MaxInt64))
		return
	}
	env.Uptime = time.Duration(uptime)
}

func (d *decoder) publish(env *Envelope) {
	env.Seq = d.uvarint("seq")
	env.Message.ID = d.string("message id")
	env.Message.Channel = d.string("channel")
	env.Message.Data = d.bytes("data")

	qos := d.uvarint("qos")
	if qos > 1 {
		d.failf("invalid qos %d, expected 0 or 1", qos)
		return
	}
	env.Message.QoS = int(qos)
}

func (d *decoder) presence(env *Envelope) {
	n := d.count("delta", minDeltaSize)
	if n == 0 {
		return
	}
	env.Deltas = make([]backplane.PresenceDelta, n)
	prevChannel := ""
	for i := range env.Deltas {
		delta := &env.Deltas[i]
		delta.Op = backplane.PresenceOp(d.byte("presence op"))
		if d.err == nil && delta.Op != backplane.PresenceJoin && delta.Op != backplane.PresenceLeave {
			d.failf("invalid presence op %d, expected 1 or 2", delta.Op)
		}
		d.entry(&delta.Entry, env.Origin, prevChannel)
		if d.err != nil {
			return
		}
		prevChannel = delta.Entry.Channel
	}
}

func (d *decoder) syncChunk(env *Envelope) {
	env.SyncID = d.uvarint("sync id")
	switch last := d.byte("last"); {
	case d.err != nil:
		return
	case last > 1:
		d.failf("invalid last byte %d, expected 0 or 1", last)
		return
	default:
		env.Last = last == 1
	}

	n := d.count("entry", minEntrySize)
	if n == 0 {
		return
	}
	env.Entries = make([]backplane.PresenceEntry, n)
	prevChannel := ""
	for i := range env.Entries {
		d.entry(&env.Entries[i], env.Origin, prevChannel)
		if d.err != nil {
			return
		}
		prevChannel = env.Entries[i].Channel
	}
}

func (d *decoder) peers(env *Envelope) {
	n := d.count("peer", minPeerSize)
	if n == 0 {
		return
	}
	env.Peers = make([]string, n)
	for i := range env.Peers {
		env.Peers[i] = d.string("peer address")
	}
}

// entry reads one presence entry. An origin's entries usually name the
// origin as their Node and come grouped by channel, so Node and Channel reuse
// origin and prevChannel when the bytes match, which saves an allocation.
func (d *decoder) entry(e *backplane.PresenceEntry, origin, prevChannel string) {
	e.Channel = d.stringReuse("entry channel", prevChannel)
	e.Member = d.string("entry member")
	e.Node = d.stringReuse("entry node", origin)
	e.Conn = d.string("entry conn")
	e.Info = d.bytes("entry info")
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	d.start = d.off
	if d.off >= len(d.buf) {
		d.failf("truncated %s", field)
		return 0
	}
	c := d.buf[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint(field string) uint64 {
	return d.uvarintOf(field, "")
}

// uvarintOf reads an unsigned varint in its minimal form. A longer form would
// decode to the same value, but Append never writes it, and accepting it
// would give one envelope several encodings. Errors name the field as field
// followed by suffix, which the caller passes apart so that a successful read
// does not allocate a joined name.
func (d *decoder) uvarintOf(field, suffix string) uint64 {
	if d.err != nil {
		return 0
	}
	d.start = d.off
	v, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		d.failf("truncated %s%s", field, suffix)
		return 0
	case n < 0:
		d.failf("%s%s overflows 64 bits", field, suffix)
		return 0
	case n > 1 && d.buf[d.off+n-1] == 0:
		// A final group of zero bits adds nothing, so a shorter form exists.
		d.failf("non-minimal varint in %s%s", field, suffix)
		return 0
	}
	d.off += n
	return v
}

// count reads the number of items of a list and rejects a number that the
// bytes left cannot hold at minSize bytes per item, so that the caller can
// allocate the list at once.
func (d *decoder) count(item string, minSize int) int {
	v := d.uvarintOf(item, " count")
	if d.err != nil {
		return 0
	}
	if room := uint64((len(d.buf) - d.off) / minSize); v > room {
		d.failf("%s count %d exceeds the %d that fit in the bytes left", item, v, room)
		return 0
	}
	return int(v)
}

// raw reads a length-prefixed field and returns a slice of buf, which the
// caller must copy before it keeps it.
func (d *decoder) raw(field string) []byte {
	v := d.uvarintOf(field, " length")
	if d.err != nil {
		return nil
	}
	if left := uint64(len(d.buf) - d.off); v > left {
		d.failf("%s length %d exceeds the %d bytes left", field, v, left)
		return nil
	}
	b := d.buf[d.off : d.off+int(v)]
	d.off += int(v)
	return b
}

func (d *decoder) string(field string) string {
	return string(d.raw(field))
}

// stringReuse reads a string and returns prev when the bytes are equal, which
// costs no allocation because the comparison does not convert the bytes.
func (d *decoder) stringReuse(field, prev string) string {
	b := d.raw(field)
	if string(b) == prev {
		return prev
	}
	return string(b)
}

// bytes reads a length-prefixed JSON value into a copy that does not alias
// buf, so the caller can reuse its read buffer. An empty value returns nil.
func (d *decoder) bytes(field string) json.RawMessage {
	b := d.raw(field)
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
