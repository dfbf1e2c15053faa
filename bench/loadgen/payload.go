package loadgen

import (
	"bytes"
	"strconv"
)

// stampPrefix starts every published data object. The receiver finds the
// stamp by this prefix in any envelope, without decoding the JSON.
var stampPrefix = []byte(`{"t":`)

// appendData appends the data object of one publish to dst: the send time
// in Unix nanoseconds, the publisher index and the sequence number, padded
// with a string so that the object is size bytes long when size allows.
func appendData(dst []byte, sentNanos int64, publisher int, seq int64, size int) []byte {
	start := len(dst)
	dst = append(dst, stampPrefix...)
	dst = strconv.AppendInt(dst, sentNanos, 10)
	dst = append(dst, `,"g":`...)
	dst = strconv.AppendInt(dst, int64(publisher), 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"x":"`...)
	pad := size - (len(dst) - start) - 2
	for i := 0; i < pad; i++ {
		dst = append(dst, 'a'+byte(i%26))
	}
	return append(dst, `"}`...)
}

// stamp is the send time, publisher and sequence number that a receiver
// reads back from a delivered message.
type stamp struct {
	sentNanos int64
	publisher int
	seq       int64
}

// parseStamp finds the data object written by appendData inside msg, a
// message notification of either protocol. ok is false for any other
// message.
func parseStamp(msg []byte) (s stamp, ok bool) {
	i := bytes.Index(msg, stampPrefix)
	if i < 0 {
		return stamp{}, false
	}
	b := msg[i+len(stampPrefix):]
	var publisher int64
	if s.sentNanos, b, ok = parseField(b, `,"g":`); !ok {
		return stamp{}, false
	}
	if publisher, b, ok = parseField(b, `,"s":`); !ok {
		return stamp{}, false
	}
	if s.seq, _, ok = parseField(b, `,"x":`); !ok {
		return stamp{}, false
	}
	s.publisher = int(publisher)
	return s, true
}

// parseField reads a non-negative decimal integer at the start of b that
// must be followed by next, and returns the rest of b after next.
func parseField(b []byte, next string) (int64, []byte, bool) {
	var v int64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	if i == 0 || i > 19 || !bytes.HasPrefix(b[i:], []byte(next)) {
		return 0, nil, false
	}
	return v, b[i+len(next):], true
}
