// Package topology starts a wscluster deployment for the suite and gives the
// nemesis its levers: processes to kill, pause and restart, and links to cut
// or slow down. The local implementation runs node processes on 127.0.0.1;
// the container implementation runs each node in its own container. The
// workloads, the nemesis and the checkers see only this interface.
package topology

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Redis is the name of the Redis server in link lists and fault targets.
const Redis = "redis"

// Sentinel errors.
var (
	// ErrUnsupported is returned, wrapped, by a fault method that this
	// topology or this kernel cannot carry out. The nemesis fails the run
	// rather than pretend the fault happened.
	ErrUnsupported = errors.New("topology: fault not supported")
	// ErrUnknownNode is returned, wrapped, for a node id that is not part
	// of the topology.
	ErrUnknownNode = errors.New("topology: unknown node")
)

// Config is the cluster description that every topology starts from.
type Config struct {
	// Engine is "none", "mesh" or "redis".
	Engine string
	// Nodes is the number of nodes, named n1..nN.
	Nodes int
	// Dir is the run folder. Node logs go to Dir/logs/<node>.log.
	Dir string
	// Binary is the wscluster binary, for topologies that run processes.
	Binary string
	// HeartbeatInterval and PeerTimeout are passed to every node.
	// Defaults 1s and 3s, the node's own defaults.
	HeartbeatInterval time.Duration
	PeerTimeout       time.Duration
	// PingInterval is the node's --ping-interval. Default 10s.
	PingInterval time.Duration
	// Ordering is the node's --ordering ("" or "total").
	Ordering string
	// ExtraArgs are appended to every node's command line.
	ExtraArgs []string
	// StartTimeout bounds the wait for each node's /healthz. Default 30s.
	StartTimeout time.Duration
	// Logger receives process starts, fault steps and teardown. Default
	// slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with zero durations replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.PeerTimeout == 0 {
		c.PeerTimeout = 3 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 10 * time.Second
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Node is the set of addresses where clients and probes reach one node.
type Node struct {
	// ID is the node's --node-id, n1..nN.
	ID string `json:"id"`
	// WSURL is the node's WebSocket endpoint, ws://host:port/ws.
	WSURL string `json:"ws_url"`
	// HTTPURL is the base of /healthz, /readyz, /cluster and /metrics,
	// http://host:port.
	HTTPURL string `json:"http_url"`
	// Log is the path of the node's log file on this machine.
	Log string `json:"log"`
}

// Link is an undirected network link between two endpoints: two node ids,
// or a node id and Redis.
type Link [2]string

// LinkFault degrades links without cutting them.
type LinkFault struct {
	Latency time.Duration
	Jitter  time.Duration
	// Loss is the fraction of packets dropped, 0 to 1. Only topologies with
	// a real network can drop packets; others return ErrUnsupported.
	Loss float64
}

// Topology is a running cluster with fault levers. Methods that take a
// node accept the ids of Nodes() and, where their doc names it, Redis. Every method
// is safe for concurrent use. Each fault method returns the mechanism it
// used, e.g. "tcp-proxy" or "nftables", for the run's results.
type Topology interface {
	// Start starts Redis when the engine needs it, then every node, and
	// returns once each node returns 200 on /healthz.
	Start(ctx context.Context) error
	// Nodes lists the nodes in id order.
	Nodes() []Node
	// Links lists every link that Partition can cut: every pair of nodes
	// for mesh, and every node with Redis for redis.
	Links() []Link

	// Kill stops a node (or Redis) at once, like SIGKILL.
	Kill(ctx context.Context, node string) (mechanism string, err error)
	// Restart starts a killed node (or Redis) again with the same
	// configuration, and waits for /healthz. A restarted node is a new
	// incarnation.
	Restart(ctx context.Context, node string) (mechanism string, err error)
	// Pause freezes a node (or Redis) without closing its sockets, and
	// Resume thaws it.
	Pause(ctx context.Context, node string) (mechanism string, err error)
	Resume(ctx context.Context, node string) (mechanism string, err error)

	// Partition cuts the given links in both directions, on top of links
	// already cut. Traffic on a cut link is dropped silently.
	Partition(ctx context.Context, links []Link) (mechanism string, err error)
	// Degrade applies f to the given links, replacing any earlier LinkFault
	// on them.
	Degrade(ctx context.Context, links []Link, f LinkFault) (mechanism string, err error)
	// ResetConnections closes every open connection on the given links
	// once; new connections go through.
	ResetConnections(ctx context.Context, links []Link) (mechanism string, err error)
	// HealNetwork removes every partition and link fault, and returns an
	// error if any is left behind.
	HealNetwork(ctx context.Context) error

	// Close stops every process or container, removes what the topology
	// created except the run folder, and is safe to call twice.
	Close(ctx context.Context) error
}

// EngineLinks lists the links between nodes ids that an engine uses: every
// pair of nodes for mesh, every node with Redis for redis, and nothing for
// none. Topologies return it from Links.
func EngineLinks(engine string, ids []string) []Link {
	links := []Link{}
	for i, a := range ids {
		switch engine {
		case "mesh":
			for _, b := range ids[i+1:] {
				links = append(links, Link{a, b})
			}
		case "redis":
			links = append(links, Link{a, Redis})
		}
	}
	return links
}

// NodeFlags returns the serve flags that every topology gives node id: its
// id, the engine, the timings, JSON logs and the ordering. The topology
// adds the addresses and the engine's own flags.
func (c Config) NodeFlags(id string) []string {
	flags := []string{
		"--node-id", id,
		"--engine", c.Engine,
		"--heartbeat-interval", c.HeartbeatInterval.String(),
		"--peer-timeout", c.PeerTimeout.String(),
		"--ping-interval", c.PingInterval.String(),
		"--log-format", "json",
		"--log-level", "info",
	}
	if c.Ordering != "" {
		flags = append(flags, "--ordering", c.Ordering)
	}
	return flags
}
