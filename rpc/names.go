package rpc

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Limits of the names and member info of the protocol.
const (
	MaxChannelBytes = 255
	MaxMemberBytes  = 128
	MaxInfoBytes    = 1024
)

// Reply sends the outcome of one request: a result, or an error when err is
// not nil. A protocol calls it exactly once per request, notifications
// included (their reply is discarded). The frame is queued to the client
// before Reply returns, so a protocol that calls it under a lock orders the
// reply before any notification it queues after releasing that lock.
type Reply func(result any, err *Error)

// CheckChannel returns error 1001 unless name is a valid channel name: 1-255
// bytes of UTF-8 without control characters. Every other character,
// including glob characters such as * and ?, is literal.
func CheckChannel(name string) *Error {
	if reason := checkName(name, MaxChannelBytes); reason != "" {
		return Errorf(CodeInvalidChannel, "invalid channel name %q: %s", truncate(name), reason)
	}
	return nil
}

// CheckMember returns error 1002 unless id is a valid member id: 1-128 bytes
// of UTF-8 without control characters.
func CheckMember(id string) *Error {
	if reason := checkName(id, MaxMemberBytes); reason != "" {
		return Errorf(CodeInvalidMember, "invalid member id %q: %s", truncate(id), reason)
	}
	return nil
}

// CompactInfo validates member info and returns it as compact JSON. A
// missing or null info becomes {}. Anything but an object, or an object over
// 1024 bytes as compact JSON, is error 1002.
func CompactInfo(raw json.RawMessage) (json.RawMessage, *Error) {
	trimmed := trimJSONSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, nullJSON) {
		return json.RawMessage("{}"), nil
	}
	if trimmed[0] != '{' {
		return nil, Errorf(CodeInvalidMember, "invalid member info: must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, Errorf(CodeInvalidMember, "invalid member info: %v", err)
	}
	if buf.Len() > MaxInfoBytes {
		return nil, Errorf(CodeInvalidMember, "invalid member info: %d bytes as compact JSON, the limit is %d", buf.Len(), MaxInfoBytes)
	}
	return buf.Bytes(), nil
}

// checkName returns why name is invalid, or "" when it is valid.
func checkName(name string, maxBytes int) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > maxBytes:
		return "longer than the limit of " + strconv.Itoa(maxBytes) + " bytes"
	case !utf8.ValidString(name):
		return "not valid UTF-8"
	}
	for _, r := range name {
		if isControl(r) {
			return "contains a control character"
		}
	}
	return ""
}

// isControl reports whether r is in Unicode category Cc: C0, DEL and C1.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7F && r <= 0x9F)
}

// truncate shortens a rejected name for an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
