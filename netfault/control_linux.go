//go:build linux

package netfault

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// controlTimeout bounds one request on the control socket, from either
// side.
const controlTimeout = 5 * time.Second

// releaseTimeout bounds the wait for held packets after a zero delay.
const releaseTimeout = time.Second

// Operations of the control protocol.
const (
	opDelay  = "delay"
	opStatus = "status"
)

// errNoServe is returned, wrapped, when no serve process listens on the
// control socket.
var errNoServe = errors.New("no wscluster-netfault serve process listens on the control socket")

// controlRequest is one JSON line that a command sends to serve.
type controlRequest struct {
	Op     string        `json:"op"`
	Delay  time.Duration `json:"delay_ns,omitempty"`
	Jitter time.Duration `json:"jitter_ns,omitempty"`
}

// controlResponse is serve's one-line JSON response. Missing and Hint are
// set when the kernel cannot apply the request, as in UnsupportedError.
type controlResponse struct {
	Error   string      `json:"error,omitempty"`
	Missing string      `json:"missing,omitempty"`
	Hint    string      `json:"hint,omitempty"`
	Queue   QueueStatus `json:"queue"`
}

// ControlServer is the control socket of a serve process. It owns the
// NFQUEUE delay queue, which it binds on the first delay request, so a
// sidecar that never delays never reads a queue.
type ControlServer struct {
	ln     net.Listener
	path   string
	logger *slog.Logger

	mu    sync.Mutex
	queue *delayQueue
	conns sync.WaitGroup
}

// ListenControl creates the unix socket at path, readable only by its
// owner, in a directory it creates with mode 0700. A socket file left by a
// serve process that is gone is replaced, but one that accepts connections
// is an error.
func ListenControl(path string, logger *slog.Logger) (*ControlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create the directory of control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another serve process listens on it: stop it or pass another --control path", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove the stale control socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict control socket %s to its owner: %w", path, err)
	}
	return &ControlServer{ln: ln, path: path, logger: logger}, nil
}

// Serve handles requests until Close. It returns nil after Close.
func (s *ControlServer) Serve() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept on control socket %s: %w", s.path, err)
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.handle(c)
		}()
	}
}

// Close stops accepting requests, releases the packets the queue holds,
// unbinds it and removes the socket file.
func (s *ControlServer) Close() error {
	err := s.ln.Close()
	s.conns.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue != nil {
		err = errors.Join(err, s.queue.close())
		s.queue = nil
	}
	return err
}

// handle reads the one request of a connection and writes the response.
func (s *ControlServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	var req controlRequest
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	var resp controlResponse
	if err != nil {
		resp.Error = fmt.Sprintf("invalid control request %q: %v", line, err)
	} else {
		resp = s.apply(req)
	}
	if resp.Error != "" {
		s.logger.Warn("control request failed", "op", req.Op, "error", resp.Error)
	}
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		s.logger.Warn("writing the control response failed", "op", req.Op, "error", err)
	}
}

// apply carries out req and returns the queue's state afterwards.
func (s *ControlServer) apply(req controlRequest) controlResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Op {
	case opStatus:
	case opDelay:
		if err := s.setDelay(req.Delay, req.Jitter); err != nil {
			return errorResponse(err)
		}
	default:
		return controlResponse{Error: fmt.Sprintf("unknown control operation %q: use %q or %q", req.Op, opDelay, opStatus)}
	}
	if s.queue == nil {
		return controlResponse{Queue: QueueStatus{Queue: QueueNum}}
	}
	return controlResponse{Queue: s.queue.status()}
}

// setDelay binds the queue on the first non-zero delay and sets the delay.
func (s *ControlServer) setDelay(delay, jitter time.Duration) error {
	if delay < 0 || delay > MaxDelay || jitter < 0 || jitter > MaxDelay {
		return fmt.Errorf("%w: delay %v, jitter %v: use 0 to %v", ErrInvalid, delay, jitter, MaxDelay)
	}
	if s.queue == nil {
		if delay == 0 {
			return nil
		}
		q, err := startDelayQueue(s.logger)
		if err != nil {
			return err
		}
		s.queue = q
	}
	s.queue.set(delay, jitter)
	s.logger.Info("NFQUEUE delay set", "queue", QueueNum, "delay", delay, "jitter", jitter)
	if delay == 0 {
		// The caller removes the rules next, which drops the packets the
		// queue still holds, so respond once they are released.
		s.queue.waitReleased(releaseTimeout)
	}
	return nil
}

func errorResponse(err error) controlResponse {
	var unsupported *UnsupportedError
	if errors.As(err, &unsupported) {
		msg := ""
		if unsupported.Err != nil {
			msg = unsupported.Err.Error()
		}
		return controlResponse{Error: msg, Missing: unsupported.Missing, Hint: unsupported.Hint}
	}
	return controlResponse{Error: err.Error()}
}

// callControl sends req to the serve process at path and returns its
// queue state. It returns an error wrapping errNoServe when nothing
// listens there, and an *UnsupportedError when serve reports one.
func callControl(path string, req controlRequest) (QueueStatus, error) {
	c, err := net.DialTimeout("unix", path, controlTimeout)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return QueueStatus{}, fmt.Errorf("%w %s: start it in this network namespace with \"wscluster-netfault serve\"", errNoServe, path)
		}
		return QueueStatus{}, fmt.Errorf("connect to control socket %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return QueueStatus{}, fmt.Errorf("send %q to control socket %s: %w", req.Op, path, err)
	}
	var resp controlResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return QueueStatus{}, fmt.Errorf("read the response to %q from control socket %s: %w", req.Op, path, err)
	}
	switch {
	case resp.Missing != "":
		var kernelErr error
		if resp.Error != "" {
			kernelErr = errors.New(resp.Error)
		}
		return resp.Queue, &UnsupportedError{Missing: resp.Missing, Hint: resp.Hint, Err: kernelErr}
	case resp.Error != "":
		return resp.Queue, fmt.Errorf("serve process at %s: %s", path, resp.Error)
	}
	return resp.Queue, nil
}
