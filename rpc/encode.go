package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// nullID is the id of an error response to a request whose id could not be
// read, as JSON-RPC 2.0 prescribes.
var nullID = json.RawMessage("null")

type resultResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result"`
}

type errorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *Error          `json:"error"`
}

// marshal encodes v like json.Marshal but without HTML escaping. json.Marshal
// also rewrites <, > and & inside a json.RawMessage, so an id "<a&b>" would
// come back as "\u003ca\u0026b\u003e" instead of as received.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}

	// Encode ends every value with a newline, which a frame does not need.
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// EncodeResult encodes a success response. An id from DecodeRequest is echoed
// byte for byte.
func EncodeResult(id json.RawMessage, result any) ([]byte, error) {
	return marshal(resultResponse{JSONRPC: "2.0", ID: id, Result: result})
}

// EncodeError encodes an error response. An id from DecodeRequest is echoed
// byte for byte, and a nil id becomes null.
func EncodeError(id json.RawMessage, e *Error) []byte {
	if id == nil {
		id = nullID
	}
	b, err := marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: e})
	if err == nil {
		return b
	}

	// Data that cannot be encoded is dropped, because the code and the
	// message alone still tell the client what failed.
	b, err = marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: &Error{Code: e.Code, Message: e.Message}})
	if err == nil {
		return b
	}

	// Only an id that is not valid JSON is left to fail, and a client
	// cannot match such an id anyway, so the response carries null.
	b, _ = marshal(errorResponse{JSONRPC: "2.0", ID: nullID, Error: &Error{Code: e.Code, Message: e.Message}})
	return b
}

type notification struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// EncodeNotification encodes a server-to-client notification.
func EncodeNotification(method string, params any) ([]byte, error) {
	return marshal(notification{JSONRPC: "2.0", Method: method, Params: params})
}

// AppendMessage appends the "message" notification for one publish to dst,
// without reflection, because it runs once per publish on the fan-out path.
// data must be valid JSON. channel and msgID are escaped as JSON strings.
func AppendMessage(dst []byte, channel string, data json.RawMessage, msgID string, qos int, redelivered bool) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":"message","params":{"channel":`...)
	dst = AppendString(dst, channel)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	dst = append(dst, `,"msg_id":`...)
	dst = AppendString(dst, msgID)
	dst = append(dst, `,"qos":`...)
	dst = strconv.AppendInt(dst, int64(qos), 10)
	if redelivered {
		dst = append(dst, `,"redelivered":true`...)
	}
	return append(dst, "}}"...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Names reaching this function are
// valid UTF-8 without control characters, but every byte below 0x20 is still
// escaped so that the output is valid JSON for any valid UTF-8 input. Bytes
// of invalid UTF-8 are copied unchanged.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
