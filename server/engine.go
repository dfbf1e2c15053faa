package server

import (
	"fmt"
	"log/slog"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster"
	"github.com/wscluster/wscluster/cluster/mesh"
	"github.com/wscluster/wscluster/cluster/redisbus"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/metrics"
)

// engine is the backplane of the configured --engine with what it takes to
// start and stop it.
type engine struct {
	backplane.Backplane
	// attach hands the protocols to the engine.
	attach func(protocol any)
	start  func() error
	close  func() error
}

// envelopeOverhead is room in a peer frame beyond the client message it
// carries: ids, channel name and framing.
const envelopeOverhead = 64 << 10

func newEngine(cfg config.Node, ids *backplane.IDs, m *metrics.Metrics, log *slog.Logger) (*engine, error) {
	switch cfg.Engine {
	case "none", "":
		local := backplane.NewLocal(ids)
		return &engine{Backplane: local, attach: local.Attach, start: func() error { return nil }, close: func() error { return nil }}, nil
	case "mesh":
		return newMeshEngine(cfg, ids, m, log)
	case "redis":
		return newRedisEngine(cfg, ids, m, log)
	default:
		return nil, fmt.Errorf("--engine %s: %w; use none, mesh or redis", cfg.Engine, ErrEngineUnavailable)
	}
}

func newRedisEngine(cfg config.Node, ids *backplane.IDs, m *metrics.Metrics, log *slog.Logger) (*engine, error) {
	log = log.With("engine", "redis")
	busCfg := redisbus.Config{
		NodeID:            cfg.NodeID,
		Incarnation:       ids.Incarnation(),
		Channel:           cfg.RedisChannel,
		Addr:              cfg.RedisAddr,
		Username:          cfg.RedisUsername,
		Password:          cfg.RedisPassword,
		SentinelAddrs:     cfg.RedisSentinelAddrs,
		SentinelMaster:    cfg.RedisSentinelMaster,
		HeartbeatInterval: cfg.HeartbeatInterval,
		PeerTimeout:       cfg.PeerTimeout,
		MaxFrameBytes:     cfg.MaxMessageBytes + envelopeOverhead,
		Logger:            log,
		Metrics:           m,
	}
	if cfg.RedisTLS || cfg.RedisTLSCA != "" || cfg.RedisTLSCert != "" {
		tlsConfig, err := redisbus.LoadTLS(cfg.RedisTLSCA, cfg.RedisTLSCert, cfg.RedisTLSKey)
		if err != nil {
			return nil, fmt.Errorf("invalid --redis-tls-ca, --redis-tls-cert or --redis-tls-key: %w", err)
		}
		busCfg.TLS = tlsConfig
	}
	transport, err := redisbus.New(busCfg)
	if err != nil {
		return nil, fmt.Errorf("redis engine: %w", err)
	}
	c, err := cluster.New(cluster.Config{
		IDs:               ids,
		NodeID:            cfg.NodeID,
		Transport:         transport,
		Metrics:           m,
		Logger:            log,
		HeartbeatInterval: cfg.HeartbeatInterval,
		PeerTimeout:       cfg.PeerTimeout,
		Broadcast:         true,
		TotalOrder:        cfg.Ordering == "total",
	})
	if err != nil {
		return nil, err
	}
	return &engine{Backplane: c, attach: c.Attach, start: c.Start, close: c.Close}, nil
}

func newMeshEngine(cfg config.Node, ids *backplane.IDs, m *metrics.Metrics, log *slog.Logger) (*engine, error) {
	meshCfg := mesh.Config{
		NodeID:            cfg.NodeID,
		Incarnation:       ids.Incarnation(),
		ListenAddr:        cfg.ClusterListen,
		AdvertiseAddr:     cfg.ClusterAdvertise,
		Peers:             cfg.Peers,
		PeerExchange:      cfg.PeerExchange,
		Secret:            cfg.ClusterSecret,
		HeartbeatInterval: cfg.HeartbeatInterval,
		PeerTimeout:       cfg.PeerTimeout,
		MaxFrameBytes:     cfg.MaxMessageBytes + envelopeOverhead,
		Logger:            log.With("engine", "mesh"),
		Metrics:           m,
	}
	if cfg.ClusterTLSCert != "" {
		tlsConfig, err := mesh.LoadTLS(cfg.ClusterTLSCert, cfg.ClusterTLSKey, cfg.ClusterTLSCA)
		if err != nil {
			return nil, fmt.Errorf("invalid --cluster-tls-cert, --cluster-tls-key or --cluster-tls-ca: %w", err)
		}
		meshCfg.TLS = tlsConfig
	}
	transport, _, err := cluster.NewMeshTransport(meshCfg)
	if err != nil {
		return nil, fmt.Errorf("mesh engine: %w", err)
	}
	c, err := cluster.New(cluster.Config{
		IDs:               ids,
		NodeID:            cfg.NodeID,
		Transport:         transport,
		Metrics:           m,
		Logger:            log.With("engine", "mesh"),
		HeartbeatInterval: cfg.HeartbeatInterval,
		PeerTimeout:       cfg.PeerTimeout,
	})
	if err != nil {
		return nil, err
	}
	return &engine{Backplane: c, attach: c.Attach, start: c.Start, close: c.Close}, nil
}
