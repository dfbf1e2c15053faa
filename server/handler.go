package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wscluster/wscluster/auth"
	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/metrics"
	"github.com/wscluster/wscluster/rpc"
	"github.com/wscluster/wscluster/wsconn"
)

// Subprotocol is the WebSocket subprotocol of the client protocol.
const Subprotocol = "wscluster.v1"

// Protocol serves a set of JSON-RPC methods on client connections. The
// pub/sub and presence protocols implement it.
type Protocol interface {
	// Methods returns the method names the protocol serves.
	Methods() []string
	// Handle serves one request. It runs for the connection's reader,
	// which waits for it, and must call reply exactly once, before it
	// returns or later from any goroutine. Inside a JSON-RPC batch
	// (c.SendsHeld), whose responses go out together, reply must come
	// before Handle returns.
	Handle(c *wsconn.Conn, req *rpc.Request, reply rpc.Reply)
	// Disconnected releases everything the protocol holds for c. It is
	// called once, after c's last request was handled.
	Disconnected(c *wsconn.Conn)
}

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// IDs assigns connection ids. Required.
	IDs *backplane.IDs
	// Metrics receives counters. Required.
	Metrics *metrics.Metrics
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
	// AllowedOrigins lists the browser origins allowed to upgrade, as
	// lower-case scheme://host[:port]. Empty means the request's own host
	// only; "*" allows any. A request without Origin is always allowed.
	AllowedOrigins []string
	// PingInterval is the time between pings to each client; a client that
	// does not answer one within the same time is closed. Default 10s.
	PingInterval time.Duration
	// Conn holds the per-connection limits.
	Conn wsconn.Config
	// Verifier, if set, requires every client to present a valid token.
	Verifier *auth.Verifier
}

// Handler is the WebSocket endpoint. Mount it in any http.ServeMux, attach
// protocols, and call Shutdown to close its connections.
type Handler struct {
	cfg       HandlerConfig
	log       *slog.Logger
	upgrader  websocket.Upgrader
	protocols []Protocol
	methods   map[string]Protocol

	mu       sync.Mutex
	conns    map[*wsconn.Conn]struct{}
	closing  bool
	active   sync.WaitGroup
	stopPing chan struct{}
}

// NewHandler returns a Handler and starts its pinger, which stops in
// Shutdown.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.IDs == nil || cfg.Metrics == nil {
		panic("server: HandlerConfig.IDs and HandlerConfig.Metrics are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 10 * time.Second
	}
	cfg.Conn = cfg.Conn.WithDefaults()
	workers := newWorkerPool()
	if cfg.Conn.Handoff == nil {
		cfg.Conn.Handoff = workers.run
	}
	h := &Handler{
		cfg:      cfg,
		log:      cfg.Logger,
		methods:  make(map[string]Protocol),
		conns:    make(map[*wsconn.Conn]struct{}),
		stopPing: make(chan struct{}),
	}
	h.upgrader = websocket.Upgrader{
		Subprotocols: []string{Subprotocol},
		CheckOrigin:  h.checkOrigin,
		// A pool that is never drawn from keeps gorilla from holding a
		// write buffer per connection; this package writes frames itself.
		WriteBufferPool: &sync.Pool{},
		Error:           h.upgradeError,
	}
	go h.pingLoop()
	return h
}

// Attach registers a protocol's methods. Call it before serving. A method
// that another protocol already serves panics, because that is a
// programming error.
func (h *Handler) Attach(p Protocol) {
	for _, m := range p.Methods() {
		if _, dup := h.methods[m]; dup {
			panic("server: method " + m + " is served by two protocols")
		}
		h.methods[m] = p
	}
	h.protocols = append(h.protocols, p)
}

// ServeHTTP upgrades the request and starts serving the connection on a
// goroutine of its own; it returns without waiting for the connection to
// close. Shutdown waits for every connection.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.acceptingRequest(w, r) {
		return
	}
	identity, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader already answered with an HTTP error.
		return
	}
	id := h.cfg.IDs.ConnID()
	c := wsconn.New(id, ws, &h.cfg.Conn, h.log)
	c.SetIdentity(identity)
	if !h.register(c) {
		c.Close(wsconn.CloseGoingAway, "node shutting down")
		go c.ReadLoop(func([]byte) {})
		return
	}
	h.log.Debug("connection opened", "conn", id, "remote", r.RemoteAddr, "subprotocol", c.Subprotocol())

	// The connection is served by a goroutine of its own, and ServeHTTP
	// returns. net/http keeps its per-request state (a 4 KiB write buffer,
	// the request, the response and the serving goroutine's grown stack)
	// until the handler returns, which would otherwise be for the whole
	// life of the connection.
	go h.serveConn(c)
}

// serveConn reads c's messages until it closes, then unregisters it. The
// messages are handled on pooled workers (see workerPool and
// wsconn.Config.Handoff).
func (h *Handler) serveConn(c *wsconn.Conn) {
	defer h.unregister(c)
	c.ReadLoop(func(msg []byte) { h.dispatch(c, msg) })
	h.log.Debug("connection closed", "conn", c.ID(), "code", c.CloseCode())
}

// acceptingRequest rejects requests that must not be upgraded, answering
// them itself.
func (h *Handler) acceptingRequest(w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		h.reject(w, http.StatusServiceUnavailable, "shutting_down", "the node is shutting down; reconnect to another node")
		return false
	}
	if offered := websocket.Subprotocols(r); len(offered) > 0 && !slices.Contains(offered, Subprotocol) {
		h.reject(w, http.StatusBadRequest, "subprotocol",
			"unsupported WebSocket subprotocol "+strings.Join(offered, ", ")+": offer "+Subprotocol+" or none")
		return false
	}
	return true
}

// authenticate verifies the client's token when access control is on. A
// rejected request gets 401 with the reason; the token itself is never
// logged.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Identity, bool) {
	if h.cfg.Verifier == nil {
		return nil, true
	}
	identity, err := h.cfg.Verifier.Verify(tokenFrom(r))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		h.reject(w, http.StatusUnauthorized, "token", "unauthorized: "+err.Error())
		return nil, false
	}
	return identity, true
}

// tokenFrom returns the token of the token query parameter, or else of an
// Authorization: Bearer header.
func tokenFrom(r *http.Request) string {
	if token := r.URL.Query().Get("token"); token != "" {
		return token
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

func (h *Handler) reject(w http.ResponseWriter, status int, reason, msg string) {
	h.cfg.Metrics.UpgradesRejected.WithLabelValues(reason).Inc()
	h.log.Info("upgrade rejected", "reason", reason, "status", status, "detail", msg)
	http.Error(w, msg, status)
}

func (h *Handler) upgradeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	// gorilla/websocket responds with 403 only when checkOrigin returned
	// false, and checkOrigin already counted and logged that rejection.
	if status == http.StatusForbidden {
		http.Error(w, fmt.Sprintf("WebSocket upgrade failed: origin %q is not allowed; list it in --allowed-origins", r.Header.Get("Origin")), status)
		return
	}
	h.reject(w, status, "handshake", "WebSocket upgrade failed: "+reason.Error())
}

// checkOrigin applies --allowed-origins. Only browsers send Origin, and a
// request without it is allowed, as it cannot be a cross-site request.
func (h *Handler) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	allowed := h.originAllowed(origin, r.Host)
	if !allowed {
		h.cfg.Metrics.UpgradesRejected.WithLabelValues("origin").Inc()
		h.log.Info("upgrade rejected: origin not allowed; list it in --allowed-origins", "origin", origin)
	}
	return allowed
}

func (h *Handler) originAllowed(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(h.cfg.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, host)
	}
	normalized := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, allowed := range h.cfg.AllowedOrigins {
		if allowed == "*" || allowed == normalized {
			return true
		}
	}
	return false
}

func (h *Handler) register(c *wsconn.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.conns[c] = struct{}{}
	h.active.Add(1)
	h.cfg.Metrics.Connections.Inc()
	h.cfg.Metrics.ConnectionsAccepted.Inc()
	return true
}

func (h *Handler) unregister(c *wsconn.Conn) {
	for _, p := range h.protocols {
		p.Disconnected(c)
	}
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.cfg.Metrics.Connections.Dec()
	h.active.Done()
}

// pingLoop pings every connection once per interval from one goroutine, so
// that an idle connection costs no goroutine or timer of its own.
func (h *Handler) pingLoop() {
	ticker := time.NewTicker(h.cfg.PingInterval)
	defer ticker.Stop()
	for {
		select {
		case <-h.stopPing:
			return
		case <-ticker.C:
			for _, c := range h.snapshot() {
				c.Ping(h.cfg.PingInterval)
			}
		}
	}
}

func (h *Handler) snapshot() []*wsconn.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*wsconn.Conn, 0, len(h.conns))
	for c := range h.conns {
		out = append(out, c)
	}
	return out
}

// ConnectionCount returns the number of open client connections.
func (h *Handler) ConnectionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Shutdown stops accepting connections, closes every open one with 1001
// and waits until they are gone or ctx ends. Calling it twice is safe.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closing {
		h.closing = true
		close(h.stopPing)
	}
	h.mu.Unlock()

	for _, c := range h.snapshot() {
		c.Close(wsconn.CloseGoingAway, "node shutting down")
	}

	done := make(chan struct{})
	go func() {
		h.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
