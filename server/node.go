// Package server assembles a wscluster node: the WebSocket endpoint with the
// pub/sub and presence protocols, the backplane of the configured engine,
// and the operational endpoints /healthz, /readyz, /cluster and /metrics.
//
// Applications that embed wscluster can use New to get a whole node, or
// NewHandler with pubsub.New and presence.New to mount the protocols in an
// http.ServeMux of their own.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wscluster/wscluster/auth"
	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/metrics"
	"github.com/wscluster/wscluster/presence"
	"github.com/wscluster/wscluster/pubsub"
	"github.com/wscluster/wscluster/wsconn"
)

// ErrEngineUnavailable is returned by New for an engine that this build
// cannot run.
var ErrEngineUnavailable = errors.New("engine not available")

// ShutdownTimeout bounds a graceful shutdown: the contract promises an exit
// within 10 s of SIGTERM, and the rest of that budget is left for the
// process to exit.
const ShutdownTimeout = 8 * time.Second

// Node is one wscluster node.
type Node struct {
	cfg      config.Node
	log      *slog.Logger
	metrics  *metrics.Metrics
	bp       backplane.Backplane
	pubsub   *pubsub.PubSub
	presence *presence.Presence
	ws       *Handler
	mux      *http.ServeMux
	engine   *engine
	started  atomic.Bool
}

// New assembles a node from cfg. It returns an error wrapping
// ErrEngineUnavailable for an engine this build does not have.
func New(cfg config.Node, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.NodeID)
	n := &Node{cfg: cfg, log: log, metrics: metrics.New()}
	ids := backplane.NewIDs(cfg.NodeID)
	n.metrics.SetNodeInfo(cfg.NodeID, ids.Incarnation())

	// The backplane comes first, because both protocols hand it their
	// traffic.
	eng, err := newEngine(cfg, ids, n.metrics, log)
	if err != nil {
		return nil, err
	}
	n.engine = eng
	n.bp = eng.Backplane

	n.pubsub = pubsub.New(pubsub.Config{
		Backplane:         n.bp,
		Metrics:           n.metrics,
		Logger:            log,
		MaxSubscriptions:  cfg.MaxSubscriptions,
		QoS1RetryInterval: cfg.QoS1RetryInterval,
		QoS1RetryLimit:    cfg.QoS1RetryLimit,
	})
	n.presence = presence.New(presence.Config{NodeID: cfg.NodeID, Backplane: n.bp, Metrics: n.metrics, Logger: log})
	verifier, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	if verifier != nil {
		log.Info("access control on: clients need a token", "algorithm", verifier.Algorithm())
	}

	n.ws = n.newHandler(ids, verifier)
	n.ws.Attach(n.pubsub)
	n.ws.Attach(n.presence)
	eng.attach(n.pubsub)
	eng.attach(n.presence)
	n.mux = n.routes()
	return n, nil
}

// newHandler builds the WebSocket endpoint from the node's configuration.
func (n *Node) newHandler(ids *backplane.IDs, verifier *auth.Verifier) *Handler {
	cfg := n.cfg
	return NewHandler(HandlerConfig{
		Verifier:       verifier,
		IDs:            ids,
		Metrics:        n.metrics,
		Logger:         n.log,
		AllowedOrigins: cfg.AllowedOrigins,
		PingInterval:   cfg.PingInterval,
		Conn: wsconn.Config{
			MaxMessageBytes: cfg.MaxMessageBytes,
			SendQueueLength: cfg.SendQueueLength,
			SendQueueBytes:  cfg.SendQueueBytes,
			OnSlowConsumer:  func(*wsconn.Conn) { n.metrics.SlowConsumerCloses.Inc() },
			OnBadInput: func(_ *wsconn.Conn, code int) {
				n.metrics.BadInputCloses.WithLabelValues(fmt.Sprint(code)).Inc()
			},
		},
	})
}

func (n *Node) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/ws", n.ws)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", n.serveReady)
	mux.HandleFunc("/cluster", n.serveCluster)
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.Registry, promhttp.HandlerOpts{}))
	if n.cfg.APIKey != "" {
		mux.Handle("/api/publish", &apiPublisher{key: []byte(n.cfg.APIKey), maxBytes: n.cfg.MaxMessageBytes, pubsub: n.pubsub})
	}
	return mux
}

// Status is the JSON document of /cluster and the body of /readyz.
type Status struct {
	NodeID         string                 `json:"node_id"`
	Engine         string                 `json:"engine"`
	Ready          bool                   `json:"ready"`
	ConnectedPeers int                    `json:"connected_peers"`
	Peers          []backplane.PeerStatus `json:"peers"`
}

// Status returns the node's cluster status.
func (n *Node) Status() Status {
	engine := n.cfg.Engine
	if engine == "" {
		engine = "none"
	}
	s := Status{NodeID: n.cfg.NodeID, Engine: engine, Ready: n.bp.Ready(), Peers: []backplane.PeerStatus{}}
	if pr, ok := n.bp.(backplane.PeerReporter); ok {
		s.ConnectedPeers = pr.ConnectedPeerCount()
		if peers := pr.Peers(); peers != nil {
			s.Peers = peers
		}
	}
	return s
}

func (n *Node) serveCluster(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, n.Status())
}

func (n *Node) serveReady(w http.ResponseWriter, _ *http.Request) {
	s := n.Status()
	status := http.StatusOK
	if !s.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Handler returns the node's HTTP handler: /ws and the operational endpoints.
func (n *Node) Handler() http.Handler { return n.mux }

// PubSub returns the node's pub/sub protocol, for server-side publishes.
func (n *Node) PubSub() *pubsub.PubSub { return n.pubsub }

// Presence returns the node's presence protocol.
func (n *Node) Presence() *presence.Presence { return n.presence }

// Metrics returns the node's collectors.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// Start starts the backplane engine: the mesh listens and dials its peers.
// Serve calls it; an application that mounts Handler itself calls it once
// before serving.
func (n *Node) Start() error {
	if !n.started.CompareAndSwap(false, true) {
		return nil
	}
	if err := n.engine.start(); err != nil {
		if n.cfg.Engine == "mesh" {
			return fmt.Errorf("start --engine mesh with --cluster-listen %s: %w", n.cfg.ClusterListen, err)
		}
		return fmt.Errorf("start --engine %s: %w", n.cfg.Engine, err)
	}
	return nil
}

// Shutdown tells the peers this node is leaving, closes every client
// connection with 1001 and waits for them, or for ctx. It is safe to call
// twice.
func (n *Node) Shutdown(ctx context.Context) error {
	err := n.ws.Shutdown(ctx)
	if closeErr := n.engine.close(); closeErr != nil && err == nil {
		err = closeErr
	}
	return err
}

// Run serves on cfg.Listen until ctx ends, then shuts down gracefully: it
// stops accepting, closes clients with 1001 and returns within
// ShutdownTimeout.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on --listen %s: %w", n.cfg.Listen, err)
	}
	return n.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	if err := n.Start(); err != nil {
		return err
	}
	srv := &http.Server{Handler: n.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	n.log.Info("node started", "listen", ln.Addr().String(), "config", n.cfg)

	select {
	case err := <-served:
		return fmt.Errorf("http server stopped: %w", err)
	case <-ctx.Done():
	}

	n.log.Info("node stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()

	// New connections stop first, then the peers hear that this node
	// leaves, then the open clients are closed.
	_ = srv.Shutdown(shutdownCtx)
	if err := n.engine.close(); err != nil {
		n.log.Warn("closing the backplane failed", "err", err)
	}
	err := n.ws.Shutdown(shutdownCtx)
	if err != nil {
		n.log.Warn("clients still open at the shutdown deadline", "open", n.ws.ConnectionCount(), "err", err)
	}
	n.log.Info("node stopped")
	return nil
}
