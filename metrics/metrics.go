// Package metrics holds the Prometheus collectors of one node. Each node has
// its own registry, so several nodes can run in one process, as tests and
// embedding applications do.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reasons for a dropped message, the "reason" label of wscluster_messages_dropped_total.
const (
	DropSlowConsumer   = "slow_consumer"
	DropClosed         = "connection_closed"
	DropQoS1RetryLimit = "qos1_retry_limit"
)

// Metrics is the set of collectors of one node.
type Metrics struct {
	// Registry contains every collector below plus the Go and process
	// collectors; serve it with promhttp.HandlerFor.
	Registry *prometheus.Registry

	Connections         prometheus.Gauge
	ConnectionsAccepted prometheus.Counter
	UpgradesRejected    *prometheus.CounterVec
	Subscriptions       prometheus.Gauge
	MessagesIn          *prometheus.CounterVec
	MessagesOut         prometheus.Counter
	MessagesDropped     *prometheus.CounterVec
	SlowConsumerCloses  prometheus.Counter
	BadInputCloses      *prometheus.CounterVec
	QoS1Redeliveries    prometheus.Counter
	PublishRejected     prometheus.Counter
	RPCErrors           *prometheus.CounterVec
	PresenceEntries     *prometheus.GaugeVec
	PresenceEvents      *prometheus.CounterVec

	// Cluster backplane collectors. The peer label is the peer's node id.
	PeerEnvelopesSent     *prometheus.CounterVec
	PeerEnvelopesReceived *prometheus.CounterVec
	PeerReconnects        *prometheus.CounterVec
	PeerLinkRejects       *prometheus.CounterVec
	PeerEvents            *prometheus.CounterVec
	PeerQueueOverflows    *prometheus.CounterVec
	DuplicatesDropped     prometheus.Counter
	ReplayRequests        prometheus.Counter
	MessagesReplayed      prometheus.Counter
	ReplayLosses          prometheus.Counter
	PresenceSyncEntries   *prometheus.CounterVec

	// Redis backplane collectors.
	RedisReconnects    prometheus.Counter
	RedisResubscribes  prometheus.Counter
	RedisPublishErrors prometheus.Counter
	RedisEchoDrops     prometheus.Counter
	RedisMessagesIn    prometheus.Counter
	RedisMessagesOut   prometheus.Counter
}

// New creates the collectors and registers them in a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wscluster_connections", Help: "Open client WebSocket connections.",
		}),
		ConnectionsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wscluster_connections_accepted_total", Help: "Client WebSocket connections accepted.",
		}),
		UpgradesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wscluster_upgrades_rejected_total", Help: "WebSocket upgrade requests rejected, by reason.",
		}, []string{"reason"}),
		Subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wscluster_subscriptions", Help: "Channel subscriptions of this node's connections.",
		}),
		MessagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wscluster_messages_in_total",
			Help: "Messages this node delivered to its subscribers, by source: client (published on this node) or backplane (from another node).",
		}, []string{"source"}),
		MessagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wscluster_messages_out_total", Help: "Message notifications queued to subscribers, redeliveries excluded.",
		}),
		MessagesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wscluster_messages_dropped_total", Help: "Messages not delivered to a subscriber, by reason.",
		}, []string{"reason"}),
		SlowConsumerCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wscluster_slow_consumer_closes_total", Help: "Connections closed with 4008 slow consumer.",
		}),
		BadInputCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wscluster_bad_input_closes_total", Help: "Connections closed for bad input, by close code.",
		}, []string{"code"}),
		QoS1Redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wscluster_qos1_redeliveries_total", Help: "QoS 1 messages sent again because no ack arrived in time.",
		}),
		PublishRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wscluster_publish_rejected_total", Help: "Publishes answered with 1005 because the backplane was unavailable.",
		}),
		RPCErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wscluster_rpc_errors_total", Help: "JSON-RPC error responses, by error code.",
		}, []string{"code"}),
		PresenceEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wscluster_presence_members",
			Help: "Presence roster entries (one per joined connection and channel), by scope: local or remote.",
		}, []string{"scope"}),
		PresenceEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wscluster_presence_events_total", Help: "Presence join and leave events of the cluster-wide rosters, by kind.",
		}, []string{"kind"}),
	}
	m.addCluster()
	m.addRedis()
	m.Registry.MustRegister(
		m.RedisReconnects, m.RedisResubscribes, m.RedisPublishErrors,
		m.RedisEchoDrops, m.RedisMessagesIn, m.RedisMessagesOut,
	)
	m.Registry.MustRegister(
		m.PeerEnvelopesSent, m.PeerEnvelopesReceived, m.PeerReconnects, m.PeerLinkRejects,
		m.PeerEvents, m.PeerQueueOverflows, m.DuplicatesDropped, m.ReplayRequests,
		m.MessagesReplayed, m.ReplayLosses, m.PresenceSyncEntries,
	)
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Connections, m.ConnectionsAccepted, m.UpgradesRejected, m.Subscriptions,
		m.MessagesIn, m.MessagesOut, m.MessagesDropped, m.SlowConsumerCloses,
		m.BadInputCloses, m.QoS1Redeliveries, m.PublishRejected, m.RPCErrors,
		m.PresenceEntries, m.PresenceEvents,
	)
	return m
}

// addCluster creates the collectors of the cluster backplane. A node with
// --engine none registers them too, and they stay at zero.
func (m *Metrics) addCluster() {
	m.PeerEnvelopesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_peer_envelopes_sent_total", Help: "Backplane envelopes sent to a peer, by peer and kind.",
	}, []string{"peer", "kind"})
	m.PeerEnvelopesReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_peer_envelopes_received_total", Help: "Backplane envelopes received from a peer, by peer and kind.",
	}, []string{"peer", "kind"})
	m.PeerReconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_peer_reconnects_total", Help: "Links to a peer established again after a loss, by peer.",
	}, []string{"peer"})
	m.PeerLinkRejects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_peer_link_rejects_total",
		Help: "Peer links dropped or refused, by reason: handshake, auth, duplicate_id, malformed, oversized, stale_session, version.",
	}, []string{"reason"})
	m.PeerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_peer_events_total", Help: "Peers declared up or down, by event.",
	}, []string{"event"})
	m.PeerQueueOverflows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_peer_queue_overflows_total", Help: "Peer links dropped because their outbound queue was full, by peer.",
	}, []string{"peer"})
	m.DuplicatesDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wscluster_duplicates_dropped_total", Help: "Backplane publishes dropped because they were already delivered.",
	})
	m.ReplayRequests = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wscluster_replay_requests_total", Help: "Requests from peers to resume publishes after a link loss.",
	})
	m.MessagesReplayed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wscluster_messages_replayed_total", Help: "Publishes sent again from the replay buffer.",
	})
	m.ReplayLosses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wscluster_replay_losses_total", Help: "Publishes a peer missed that were no longer in the replay buffer.",
	})
	m.PresenceSyncEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wscluster_presence_sync_entries_total", Help: "Presence entries sent or received in full syncs, by direction.",
	}, []string{"direction"})
}

// addRedis creates the collectors of the Redis backplane.
func (m *Metrics) addRedis() {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m.RedisReconnects = counter("wscluster_redis_reconnects_total",
		"Redis subscriptions opened again after a connection loss or a stall.")
	m.RedisResubscribes = counter("wscluster_redis_resubscribes_total",
		"SUBSCRIBE confirmations from Redis, the first one included.")
	m.RedisPublishErrors = counter("wscluster_redis_publish_errors_total",
		"PUBLISH commands that Redis rejected or that failed.")
	m.RedisEchoDrops = counter("wscluster_redis_echo_drops_total",
		"This node's own messages received back from Redis; under --ordering total its publishes among them are then delivered locally.")
	m.RedisMessagesIn = counter("wscluster_redis_messages_in_total",
		"Messages received on the Redis channel, own echoes included.")
	m.RedisMessagesOut = counter("wscluster_redis_messages_out_total",
		"Messages published to the Redis channel.")
}

// SetNodeInfo registers wscluster_node_info, a constant 1 labelled with the
// node id and the incarnation, the random number that changes at every
// start. Tools tell a restarted node's fresh counters apart by it, because
// process_start_time_seconds can jump on a running process when the
// kernel's boot time reading drifts.
func (m *Metrics) SetNodeInfo(nodeID string, incarnation uint64) {
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "wscluster_node_info",
		Help:        "Constant 1, labelled with this node's id and incarnation.",
		ConstLabels: prometheus.Labels{"node_id": nodeID, "incarnation": strconv.FormatUint(incarnation, 10)},
	})
	info.Set(1)
	m.Registry.MustRegister(info)
}
