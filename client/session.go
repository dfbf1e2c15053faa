package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// writeTimeout bounds every frame write. A write that times out means the
// server has stopped reading, so the connection is closed and, with
// Reconnect, redialed.
const writeTimeout = 10 * time.Second

// session is one WebSocket connection and the requests in flight on it.
type session struct {
	ws       *websocket.Conn
	url      string
	urlIndex int // index of url in Client.urls, where the next redial starts

	// writeMu serializes data frames, because gorilla/websocket allows one
	// concurrent writer. Control frames use WriteControl, which is safe
	// without it.
	writeMu sync.Mutex

	mu      sync.Mutex
	pending map[uint64]*call
	ended   bool
	endErr  error // the error that pending and later calls fail with

	// done is closed once the reader has exited and every pending call has
	// failed.
	done chan struct{}
}

// call is one request waiting for its response.
type call struct {
	// onSuccess, if set, runs in the reader goroutine when a result arrives,
	// before the reader reads the next frame. State recorded there is
	// visible to a restore after a drop that follows the result.
	onSuccess func()

	done   chan struct{} // closed when the fields below are set
	result json.RawMessage
	rpcErr *RPCError
	err    error
}

func newSession(ws *websocket.Conn, url string, urlIndex int) *session {
	return &session{
		ws:       ws,
		url:      url,
		urlIndex: urlIndex,
		pending:  make(map[uint64]*call),
		done:     make(chan struct{}),
	}
}

// register adds a pending call for id, or returns the session's end error if
// the reader has already exited.
func (s *session) register(id uint64, onSuccess func()) (*call, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.ended {
		return nil, s.endErr
	}
	c := &call{onSuccess: onSuccess, done: make(chan struct{})}
	s.pending[id] = c

	return c, nil
}

// unregister removes a pending call whose caller stopped waiting.
func (s *session) unregister(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// complete hands a response to the call waiting for id. It reports false
// when no call waits for id.
func (s *session) complete(id uint64, result json.RawMessage, rpcErr *RPCError) bool {
	s.mu.Lock()
	c, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()

	if !ok {
		return false
	}
	c.result = result
	c.rpcErr = rpcErr
	if rpcErr == nil && c.onSuccess != nil {
		c.onSuccess()
	}
	close(c.done)

	return true
}

// end fails every pending call and every later register with err.
func (s *session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.ended = true
	s.endErr = err
	for id, c := range s.pending {
		c.err = err
		close(c.done)
		delete(s.pending, id)
	}
}

// endError returns the end error, or nil while the reader runs.
func (s *session) endError() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.endErr
}

// write sends one frame. A network error or timeout closes the connection,
// so the reader exits and the client reconnects, and is returned wrapped in
// ErrDisconnected. Other errors, such as an invalid message type, leave the
// connection open.
func (s *session) write(messageType int, data []byte) error {
	if err := s.endError(); err != nil {
		return err
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	if err := s.ws.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return s.writeFailed(err)
	}
	if err := s.ws.WriteMessage(messageType, data); err != nil {
		return s.writeFailed(err)
	}

	return nil
}

// writeFailed closes the connection after a network error and wraps the
// error.
func (s *session) writeFailed(err error) error {
	var netErr net.Error
	if !errors.As(err, &netErr) && !errors.Is(err, websocket.ErrCloseSent) {
		return fmt.Errorf("write frame: %w", err)
	}

	// The reader may already have ended the session, and its error is
	// more specific than the write error.
	_ = s.ws.Close()
	if endErr := s.endError(); endErr != nil {
		return endErr
	}

	return fmt.Errorf("%w: write frame: %w", ErrDisconnected, err)
}

// sendClose sends a normal close frame and waits up to timeout for the
// server's close frame, which ends the reader, then closes the network
// connection.
func (s *session) sendClose(timeout time.Duration) error {
	// A session whose reader already exited cannot send a close frame, and
	// that is not an error of Close.
	alreadyEnded := s.endError() != nil

	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	err := s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(timeout))
	if err == nil {
		timer := time.NewTimer(timeout)
		select {
		case <-s.done:
		case <-timer.C:
		}
		timer.Stop()
	}
	_ = s.ws.Close()

	if err != nil && !alreadyEnded && !errors.Is(err, websocket.ErrCloseSent) {
		return fmt.Errorf("send close frame to %s: %w", s.url, err)
	}

	return nil
}
