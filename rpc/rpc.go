// Package rpc decodes JSON-RPC 2.0 requests and encodes responses and
// notifications for the wscluster client protocol.
//
// The decoder is strict where the JSON-RPC 2.0 specification is strict
// ("jsonrpc" must be "2.0", "method" must be a string, "params" must be an
// object) and keeps "id" as the raw bytes received, so that a response echoes
// it exactly.
package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Standard JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Application error codes of the wscluster protocol.
const (
	CodeInvalidChannel     = 1001
	CodeInvalidMember      = 1002
	CodeTooManySubscribers = 1003
	CodeAlreadyJoined      = 1004
	CodeUnavailable        = 1005
	CodeNotAuthorized      = 1006
	// CodeUnconfirmed extends the contract: the backplane may have taken
	// the publish but did not confirm it in time.
	CodeUnconfirmed = 1007
)

// Error is a JSON-RPC error object. It implements error so that protocol
// handlers can return it through ordinary error paths.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message)
}

// Errorf builds an Error with a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Request is one decoded JSON-RPC request or notification.
type Request struct {
	// ID is the raw "id" member, or nil for a notification.
	ID json.RawMessage
	// Method is the method name.
	Method string
	// Params is the raw "params" object, or nil when absent.
	Params json.RawMessage
}

// IsNotification reports whether the request carries no id, so that it gets
// no response.
func (r *Request) IsNotification() bool { return r.ID == nil }

var nullJSON = []byte("null")

// trimJSONSpace removes the whitespace that JSON allows around a value.
// bytes.TrimSpace would also remove Unicode spaces such as U+00A0, and so
// accept a frame that is not valid JSON.
func trimJSONSpace(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
}

// DecodeRequest validates one JSON value as a JSON-RPC 2.0 request object.
// On failure it returns the error to send and, when the request's id could be
// read, that id so the error response can echo it. Member names match
// exactly, so {"Method": ...} has no "method" member. raw that is not valid
// JSON is a parse error, but SplitBatch already rejects such a frame.
func DecodeRequest(raw json.RawMessage) (*Request, *Error, json.RawMessage) {
	raw = trimJSONSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, invalidRequest("a request must be a JSON object"), nil
	}

	// A map keeps member names exact, because encoding/json matches struct
	// fields case-insensitively. Its RawMessage values tell an absent member
	// (nil) from an explicit null ("null").
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, &Error{Code: CodeParseError, Message: "parse error: the request is not valid JSON"}, nil
	}

	// The id is checked first, because every later error echoes it.
	id, idErr := decodeID(members["id"])
	if idErr != nil {
		return nil, idErr, nil
	}
	if version, ok := decodeString(members["jsonrpc"]); !ok || version != "2.0" {
		return nil, invalidRequest(`"jsonrpc" must be "2.0"`), id
	}
	method, ok := decodeString(members["method"])
	if !ok {
		return nil, invalidRequest(`"method" must be a string`), id
	}
	params, perr := decodeParams(members["params"])
	if perr != nil {
		return nil, perr, id
	}
	return &Request{ID: id, Method: method, Params: params}, nil, nil
}

// decodeString decodes raw when it is a JSON string. It reports false for
// any other value, null included, because json.Unmarshal leaves a string
// untouched on null instead of failing.
func decodeString(raw json.RawMessage) (string, bool) {
	raw = trimJSONSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// decodeID accepts a string or a number. JSON-RPC 2.0 also allows null, but
// a null id cannot be told apart from the id of an error about an unreadable
// request, so wscluster rejects it as the contract allows only strings and
// numbers.
func decodeID(raw json.RawMessage) (json.RawMessage, *Error) {
	if raw == nil {
		return nil, nil
	}
	raw = trimJSONSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '"':
		return raw, nil
	case len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')):
		return raw, nil
	}
	return nil, invalidRequest(`"id" must be a string or a number`)
}

func decodeParams(raw json.RawMessage) (json.RawMessage, *Error) {
	if raw == nil {
		return nil, nil
	}
	raw = trimJSONSpace(raw)
	switch {
	case bytes.Equal(raw, nullJSON):
		return nil, nil
	case raw[0] == '{':
		return raw, nil
	case raw[0] == '[':
		return nil, Errorf(CodeInvalidParams, "positional params are not supported: pass params as an object")
	}
	return nil, invalidRequest(`"params" must be an object`)
}

func invalidRequest(msg string) *Error {
	return &Error{Code: CodeInvalidRequest, Message: "invalid request: " + msg}
}

// SplitBatch classifies a text frame as a single request or a batch. For a
// batch it returns the raw elements. A frame that is not valid JSON yields a
// parse error.
func SplitBatch(frame []byte) (elems []json.RawMessage, isBatch bool, perr *Error) {
	trimmed := trimJSONSpace(frame)
	if !json.Valid(trimmed) {
		return nil, false, &Error{Code: CodeParseError, Message: "parse error: the frame is not valid JSON"}
	}
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return []json.RawMessage{trimmed}, false, nil
	}
	if err := json.Unmarshal(trimmed, &elems); err != nil {
		return nil, false, &Error{Code: CodeParseError, Message: "parse error: " + err.Error()}
	}
	if len(elems) == 0 {
		return nil, false, invalidRequest("an empty batch")
	}
	return elems, true, nil
}
