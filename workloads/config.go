package workloads

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Sentinel errors.
var (
	// ErrUnknownWorkload is returned, wrapped, by New for a name that is not
	// one of Names.
	ErrUnknownWorkload = errors.New("workloads: unknown workload")
	// ErrInvalidConfig is returned, wrapped, by New for a Config that no
	// workload can run with, such as one without nodes or recorder.
	ErrInvalidConfig = errors.New("workloads: invalid config")
)

// Names lists the workloads that New accepts.
var Names = []string{"pubsub", "presence", "mixed"}

// Config configures a workload. Zero values are replaced by the defaults
// named on each field.
type Config struct {
	// Nodes are the cluster's nodes. Clients start on them in this order,
	// and process ids are assigned in this order.
	Nodes []topology.Node
	// Recorder receives every entry. Required.
	Recorder *history.Recorder
	// Seed seeds every process's random source, together with the process
	// id, so the same seed gives every process the same sequence of choices.
	Seed int64
	// Logger receives connects, reconnects and failures. Default: discard.
	Logger *slog.Logger

	// OpTimeout bounds every request and every dial. An operation that
	// times out is recorded as info. Default 2s.
	OpTimeout time.Duration

	// Channels is the number of pub/sub channels. Default 4.
	Channels int
	// PresenceChannels is the number of presence channels. Default 3.
	PresenceChannels int
	// PublishersPerNode and SubscribersPerNode are the pub/sub clients that
	// start on each node. Defaults 2 and 2.
	PublishersPerNode  int
	SubscribersPerNode int
	// PresenceWorkersPerNode is the number of churn workers that start on
	// each node, besides the node's one observer. Default 3.
	PresenceWorkersPerNode int

	// PublishRate is the publishes per second of each publisher. Default 40.
	PublishRate float64
	// PublishWindow is how many publishes of one publisher may wait for
	// their results at once. With more than 1, a publisher sends the next
	// publish without waiting, as a pipelining client does, so the checks
	// cover a node that sequences many publishes of a connection together.
	// Default 1.
	PublishWindow int
	// PayloadBytes is the approximate size of each publish's data, which the
	// pad of history.Payload fills up. Default 100.
	PayloadBytes int
	// QoS1Fraction is the share of publishes sent with QoS 1. Default 0.5.
	// Because zero means the default, a negative value turns QoS 1 off.
	QoS1Fraction float64

	// ObserveInterval is the time between two roster reads of a presence
	// observer. Default 250ms.
	ObserveInterval time.Duration

	// PingInterval is the nodes' --ping-interval. A node closes a client
	// that sends no pong within it, so a churn worker whose connection went
	// silent waits 2 x PingInterval + 1s before it reconnects. Default 10s,
	// the node's default.
	PingInterval time.Duration
	// SilentClients makes 5% of the churn memberships end with a silent
	// connection: every churn worker then connects through a TCP proxy of
	// its own, which stops forwarding without closing anything. Nil means
	// on; new(false) turns it off.
	SilentClients *bool
}

// Default values of Config.
const (
	DefaultOpTimeout              = 2 * time.Second
	DefaultChannels               = 4
	DefaultPresenceChannels       = 3
	DefaultPublishersPerNode      = 2
	DefaultSubscribersPerNode     = 2
	DefaultPresenceWorkersPerNode = 3
	DefaultPublishRate            = 40.0
	DefaultPublishWindow          = 1
	DefaultPayloadBytes           = 100
	DefaultQoS1Fraction           = 0.5
	DefaultObserveInterval        = 250 * time.Millisecond
	DefaultPingInterval           = 10 * time.Second
)

// MaxPublishWindow bounds Config.PublishWindow. A node takes up to 64
// publishes of a connection at once; a larger window only makes the
// client queue more.
const MaxPublishWindow = 256

// withDefaults returns c with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.OpTimeout = orDefault(c.OpTimeout, DefaultOpTimeout)
	c.Channels = orDefault(c.Channels, DefaultChannels)
	c.PresenceChannels = orDefault(c.PresenceChannels, DefaultPresenceChannels)
	c.PublishersPerNode = orDefault(c.PublishersPerNode, DefaultPublishersPerNode)
	c.SubscribersPerNode = orDefault(c.SubscribersPerNode, DefaultSubscribersPerNode)
	c.PresenceWorkersPerNode = orDefault(c.PresenceWorkersPerNode, DefaultPresenceWorkersPerNode)
	c.PublishRate = orDefault(c.PublishRate, DefaultPublishRate)
	c.PublishWindow = orDefault(c.PublishWindow, DefaultPublishWindow)
	c.PayloadBytes = orDefault(c.PayloadBytes, DefaultPayloadBytes)
	c.QoS1Fraction = orDefault(c.QoS1Fraction, DefaultQoS1Fraction)
	c.ObserveInterval = orDefault(c.ObserveInterval, DefaultObserveInterval)
	c.PingInterval = orDefault(c.PingInterval, DefaultPingInterval)
	if c.SilentClients == nil {
		c.SilentClients = new(true)
	}

	return c
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// validate checks a Config that has its defaults applied.
func (c Config) validate() error {
	if len(c.Nodes) == 0 {
		return fmt.Errorf("%w: no nodes: set Config.Nodes to the topology's nodes", ErrInvalidConfig)
	}
	if c.Recorder == nil {
		return fmt.Errorf("%w: Config.Recorder is nil: pass the run's history.Recorder", ErrInvalidConfig)
	}
	if err := validateNodes(c.Nodes); err != nil {
		return err
	}

	const positive = "use a positive value, or zero for the default"
	checks := []struct {
		name  string
		value any
		bad   bool
		fix   string
	}{
		{"OpTimeout", c.OpTimeout, c.OpTimeout < 0, positive},
		{"Channels", c.Channels, c.Channels < 0, positive},
		{"PresenceChannels", c.PresenceChannels, c.PresenceChannels < 0, positive},
		{"PublishersPerNode", c.PublishersPerNode, c.PublishersPerNode < 0, positive},
		{"SubscribersPerNode", c.SubscribersPerNode, c.SubscribersPerNode < 0, positive},
		{"PresenceWorkersPerNode", c.PresenceWorkersPerNode, c.PresenceWorkersPerNode < 0, positive},
		{"PublishRate", c.PublishRate, c.PublishRate < 0, positive},
		{"PublishWindow", c.PublishWindow, c.PublishWindow < 0 || c.PublishWindow > MaxPublishWindow, fmt.Sprintf("use 1 to %d, or zero for the default", MaxPublishWindow)},
		{"PayloadBytes", c.PayloadBytes, c.PayloadBytes < 0, positive},
		{"QoS1Fraction", c.QoS1Fraction, c.QoS1Fraction > 1, "use a share of at most 1, or a negative value for no QoS 1"},
		{"ObserveInterval", c.ObserveInterval, c.ObserveInterval < 0, positive},
		{"PingInterval", c.PingInterval, c.PingInterval < 0, positive},
	}
	for _, check := range checks {
		if check.bad {
			return fmt.Errorf("%w: Config.%s %v is out of range: %s", ErrInvalidConfig, check.name, check.value, check.fix)
		}
	}
	return nil
}

// validateNodes checks that every node has an id and a URL, and that no id
// appears twice.
func validateNodes(nodes []topology.Node) error {
	seen := make(map[string]bool, len(nodes))
	for i, n := range nodes {
		if n.ID == "" || n.WSURL == "" {
			return fmt.Errorf("%w: node %d (%q) is missing ID or WSURL: set both", ErrInvalidConfig, i, n.ID)
		}
		if seen[n.ID] {
			return fmt.Errorf("%w: node id %q appears twice in Config.Nodes", ErrInvalidConfig, n.ID)
		}
		seen[n.ID] = true
	}
	return nil
}

// New returns the workload called name, one of Names, with cfg's defaults
// applied.
func New(name string, cfg Config) (Workload, error) {
	if !slices.Contains(Names, name) {
		return nil, fmt.Errorf("%w %q: use one of %s", ErrUnknownWorkload, name, strings.Join(Names, ", "))
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	env := newEnv(cfg)
	switch name {
	case "pubsub":
		ps := newPubSub(env, 0)
		env.finalBase = ps.processes()
		return &mixed{env: env, pubsub: ps}, nil
	case "presence":
		pr := newPresence(env, 0)
		env.finalBase = pr.processes()
		return &mixed{env: env, presence: pr}, nil
	default:
		ps := newPubSub(env, 0)
		pr := newPresence(env, ps.processes())
		env.finalBase = ps.processes() + pr.processes()
		return &mixed{env: env, pubsub: ps, presence: pr}, nil
	}
}
