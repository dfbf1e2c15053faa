package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
)

var (
	// ErrClosed is returned by every method called after [Client.Close],
	// and by requests that were in flight when Close was called.
	ErrClosed = errors.New("client: closed")

	// ErrDisconnected is returned, wrapped, by requests that were in flight
	// when the connection dropped, and by calls made while the client has no
	// connection because it is reconnecting or the connection dropped with
	// Reconnect off. The wrapped chain also holds the read or write error,
	// for example a *websocket.CloseError.
	ErrDisconnected = errors.New("client: disconnected")

	// ErrWaitedTwice is returned by a second [PendingPublish.Wait] on the
	// same publish.
	ErrWaitedTwice = errors.New("client: the result of this publish was already read")
)

// JSON-RPC error codes that a wscluster node returns. The negative codes are
// the standard JSON-RPC 2.0 codes, the positive ones are wscluster's.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602

	CodeInvalidChannel       = 1001
	CodeInvalidMember        = 1002 // invalid member id or info
	CodeTooManySubscriptions = 1003
	CodeAlreadyJoined        = 1004 // already joined this channel as another member
	CodeBackplaneUnavailable = 1005 // the publish was not taken, nothing was delivered
	CodeNotAuthorized        = 1006
	CodePublishUnconfirmed   = 1007 // the backplane did not confirm the publish in time; it may be delivered
)

// RPCError is a JSON-RPC error object returned by the server. Use errors.As
// to get it from an error returned by a request method.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Error formats the code and message, and the data when the server sent any.
func (e *RPCError) Error() string {
	if len(e.Data) > 0 {
		return fmt.Sprintf("rpc error %d: %s (data: %s)", e.Code, e.Message, e.Data)
	}

	return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message)
}

// HandshakeError is returned, wrapped, by [Dial] when the server answered the
// WebSocket upgrade request with an HTTP status other than 101, for example
// 401 when a token is required. It wraps websocket.ErrBadHandshake.
type HandshakeError struct {
	URL        string
	StatusCode int    // HTTP status code of the response
	Status     string // HTTP status line, such as "401 Unauthorized"
	// Reason is the first line of the response body, such as the node's
	// "unauthorized: invalid token: token is expired", cut to 200 bytes.
	Reason string
}

// Error names the URL, the HTTP status and the server's reason.
func (e *HandshakeError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("websocket handshake with %s failed: HTTP %s: %s", e.URL, e.Status, e.Reason)
	}
	return fmt.Sprintf("websocket handshake with %s failed: HTTP %s", e.URL, e.Status)
}

// Unwrap returns websocket.ErrBadHandshake.
func (e *HandshakeError) Unwrap() error {
	return websocket.ErrBadHandshake
}

// newHandshakeError builds a HandshakeError from a handshake response.
func newHandshakeError(url string, resp *http.Response) *HandshakeError {
	e := &HandshakeError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		line, _, _ := strings.Cut(string(body), "\n")
		e.Reason = strings.TrimSpace(line)
	}
	return e
}
