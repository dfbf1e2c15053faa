package wsconn

import (
	"encoding/binary"
	"unicode/utf8"
)

// WebSocket opcodes with the FIN bit set (RFC 6455, section 5.2).
const (
	finText  = 0x81
	finClose = 0x88
	finPing  = 0x89
	finPong  = 0x8A
)

// maxControlPayload is the largest payload a control frame may carry.
const maxControlPayload = 125

// TextFrame returns payload wrapped in one unmasked, unfragmented text frame,
// the form a server sends. Encoding a message once and writing the same frame
// bytes to every subscriber keeps fan-out cost independent of encoding.
func TextFrame(payload []byte) []byte {
	frame := appendHeader(make([]byte, 0, len(payload)+10), finText, len(payload))
	return append(frame, payload...)
}

// appendHeader appends a frame header with the given first byte and payload
// length n to dst. Server frames are never masked.
func appendHeader(dst []byte, first byte, n int) []byte {
	switch {
	case n < 126:
		return append(dst, first, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, first, 126)
		return binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, first, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// closeFrame returns a close frame with a status code and a reason, cut to
// fit the control frame limit. The cut falls on a character boundary,
// because RFC 6455 requires the reason to be UTF-8 and clients such as
// gorilla/websocket fail the connection otherwise.
func closeFrame(code int, reason string) []byte {
	if len(reason) > maxControlPayload-2 {
		cut := maxControlPayload - 2
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	frame := appendHeader(nil, finClose, 2+len(reason))
	frame = binary.BigEndian.AppendUint16(frame, uint16(code))
	return append(frame, reason...)
}

func controlFrame(first byte, payload []byte) []byte {
	if len(payload) > maxControlPayload {
		payload = payload[:maxControlPayload]
	}
	return append(appendHeader(nil, first, len(payload)), payload...)
}

// pingFrame is shared by every connection, because its bytes never change.
var pingFrame = controlFrame(finPing, nil)

// FrameHeadroom is the space to leave in front of a payload that
// FinishTextFrame turns into a frame in place.
const FrameHeadroom = 10

// FinishTextFrame turns buf, which holds FrameHeadroom spare bytes followed
// by the payload, into a text frame without copying the payload. It writes
// the header into the end of the headroom and returns the frame, a suffix
// of buf.
func FinishTextFrame(buf []byte) []byte {
	payload := len(buf) - FrameHeadroom
	var header [FrameHeadroom]byte
	h := appendHeader(header[:0], finText, payload)
	start := FrameHeadroom - len(h)
	copy(buf[start:], h)
	return buf[start:]
}
