// Package config turns the arguments of `wscluster serve` and the WSCLUSTER_*
// environment variables into a validated Node.
//
// Every flag --foo-bar can also be set by the variable WSCLUSTER_FOO_BAR. A flag
// wins over its variable, and a variable value is validated exactly like a flag
// value. Parse reports the first invalid value as a one-line error that names the
// flag, where the value came from, the value (secrets shown as [redacted]) and
// what is allowed.
package config

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// ErrHelp is returned as is by Parse when -h, -help or --help was given, so the
// caller can print Usage and exit with status 0. It is flag.ErrHelp, so
// errors.Is matches both names.
var ErrHelp = flag.ErrHelp

// redacted replaces the value of a secret in errors and logs.
const redacted = "[redacted]"

// Node is the configuration of one node. Defaults are those of Default().
type Node struct {
	// Listen is the HTTP address of /ws and the operational endpoints.
	Listen string
	// NodeID is this node's id, unique in the cluster: 1-64 characters of [A-Za-z0-9._-].
	NodeID string
	// Engine is the backplane: "none", "mesh" or "redis".
	Engine string

	// ClusterListen is the mesh listener address.
	ClusterListen string
	// ClusterAdvertise is the mesh host:port other nodes use to reach this node.
	// Unless set, it is the host name plus the port of ClusterListen.
	ClusterAdvertise string
	// Peers are the mesh host:port addresses to dial, without duplicates; nil means none.
	Peers []string
	// PeerExchange makes the mesh learn further peer addresses from connected peers.
	PeerExchange bool
	// ClusterSecret is the mesh secret every peer must prove it knows; empty means an open mesh.
	ClusterSecret string

	// ClusterTLSCert, ClusterTLSKey and ClusterTLSCA are PEM files for
	// mutual TLS on mesh links: all three, or none for plain TCP.
	ClusterTLSCert string
	ClusterTLSKey  string
	ClusterTLSCA   string

	// RedisAddr is the host:port of the Redis server.
	RedisAddr string
	// RedisUsername is the Redis ACL user name; empty means the default user.
	RedisUsername string
	// RedisPassword is the Redis ACL password.
	RedisPassword string
	// RedisChannel is the one Pub/Sub channel all nodes of the redis engine share.
	RedisChannel string

	// RedisTLS makes the Redis connection TLS; RedisTLSCA, RedisTLSCert and
	// RedisTLSKey are its optional PEM files (a CA implies TLS).
	RedisTLS     bool
	RedisTLSCA   string
	RedisTLSCert string
	RedisTLSKey  string
	// RedisSentinelAddrs and RedisSentinelMaster find the Redis primary
	// through Sentinel; empty addresses mean a direct connection.
	RedisSentinelAddrs  []string
	RedisSentinelMaster string
	// Ordering is "local" or "total" (redis engine): under total, a node
	// delivers its own publishes only when Redis echoes them.
	Ordering string

	// HeartbeatInterval is the time between heartbeats a node sends to its peers.
	HeartbeatInterval time.Duration
	// PeerTimeout is the silence after which a peer is down. It is always greater
	// than HeartbeatInterval.
	PeerTimeout time.Duration
	// MaxMessageBytes is the size of the largest client frame accepted, 256 to 67108864.
	MaxMessageBytes int
	// QoS1RetryInterval is the time between redeliveries of an unacknowledged QoS 1 message.
	QoS1RetryInterval time.Duration
	// QoS1RetryLimit is the number of redeliveries before an unacknowledged QoS 1
	// message is dropped; 0 disables redelivery.
	QoS1RetryLimit int
	// PingInterval is the interval of WebSocket pings, and the time a client has to send a pong.
	PingInterval time.Duration
	// AllowedOrigins are the origins allowed to upgrade, each "scheme://host[:port]"
	// in lower case without the scheme's default port. Nil means the same origin
	// only, and []string{"*"} means any origin.
	AllowedOrigins []string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// LogFormat is the log output format: "text" or "json".
	LogFormat string

	// TokenHMACSecret, when set, makes every client present an HS256 JWT
	// signed with it. It excludes TokenPublicKey.
	TokenHMACSecret string
	// TokenPublicKey, when set, is the path of a PEM public key that
	// verifies client JWTs: RS256 for RSA, ES256 for ECDSA P-256.
	TokenPublicKey string
	// APIKey, when set, enables POST /api/publish for requests that send it
	// as a bearer token.
	APIKey string

	// MaxSubscriptions is an extension of the contract (--max-subscriptions): the
	// number of channels one connection may subscribe to, at least 1. One more
	// subscribe gets error 1003.
	MaxSubscriptions int
	// SendQueueLength is an extension of the contract (--send-queue-length): the
	// number of frames queued for one connection, at least 16, before it is a slow
	// consumer and is closed with 4008.
	SendQueueLength int
	// SendQueueBytes is an extension of the contract (--send-queue-bytes): the
	// number of bytes queued for one connection before it is a slow consumer. It is
	// at least twice MaxMessageBytes, so two frames of the largest size always fit.
	SendQueueBytes int
}

// Default returns the configuration used for every flag and variable not given.
// NodeID is the host name as os.Hostname reports it, or empty when that fails,
// and ClusterAdvertise is that name plus the default cluster port.
func Default() Node {
	return defaults(hostname())
}

// hostname returns the host name, or "" when the system cannot report one.
func hostname() string {
	name, err := os.Hostname()
	if err != nil {
		return ""
	}

	return name
}

// defaults returns the default configuration for a host name, which tests pass
// explicitly.
func defaults(host string) Node {
	n := Node{
		Listen:            ":8080",
		NodeID:            host,
		Engine:            "none",
		ClusterListen:     ":5410",
		PeerExchange:      true,
		RedisAddr:         "127.0.0.1:6379",
		RedisChannel:      "wscluster",
		Ordering:          "local",
		HeartbeatInterval: time.Second,
		PeerTimeout:       3 * time.Second,
		MaxMessageBytes:   65536,
		QoS1RetryInterval: 2 * time.Second,
		QoS1RetryLimit:    5,
		PingInterval:      10 * time.Second,
		LogLevel:          slog.LevelInfo,
		LogFormat:         "text",
		MaxSubscriptions:  1024,
		SendQueueLength:   4096,
		SendQueueBytes:    4194304,
	}
	n.ClusterAdvertise = advertiseDefault(host, n.ClusterListen)

	return n
}

// advertiseDefault returns the host name plus the port of the cluster listen
// address, or "" when either is unknown.
func advertiseDefault(host, clusterListen string) string {
	_, port, err := net.SplitHostPort(clusterListen)
	if host == "" || err != nil {
		return ""
	}

	return net.JoinHostPort(host, port)
}

// LogValue returns every setting as a group, with each non-empty secret replaced
// by [redacted], so the server can log its configuration at start.
func (n Node) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("listen", n.Listen),
		slog.String("node_id", n.NodeID),
		slog.String("engine", n.Engine),
		slog.String("cluster_listen", n.ClusterListen),
		slog.String("cluster_advertise", n.ClusterAdvertise),
		slog.Any("peers", n.Peers),
		slog.Bool("peer_exchange", n.PeerExchange),
		slog.String("cluster_secret", redact(n.ClusterSecret)),
		slog.String("cluster_tls_cert", n.ClusterTLSCert),
		slog.String("cluster_tls_key", n.ClusterTLSKey),
		slog.String("cluster_tls_ca", n.ClusterTLSCA),
		slog.String("redis_addr", n.RedisAddr),
		slog.String("redis_username", n.RedisUsername),
		slog.String("redis_password", redact(n.RedisPassword)),
		slog.String("redis_channel", n.RedisChannel),
		slog.Bool("redis_tls", n.RedisTLS),
		slog.String("redis_tls_ca", n.RedisTLSCA),
		slog.String("redis_tls_cert", n.RedisTLSCert),
		slog.String("redis_tls_key", n.RedisTLSKey),
		slog.Any("redis_sentinel_addrs", n.RedisSentinelAddrs),
		slog.String("redis_sentinel_master", n.RedisSentinelMaster),
		slog.String("ordering", n.Ordering),
		slog.Duration("heartbeat_interval", n.HeartbeatInterval),
		slog.Duration("peer_timeout", n.PeerTimeout),
		slog.Int("max_message_bytes", n.MaxMessageBytes),
		slog.Duration("qos1_retry_interval", n.QoS1RetryInterval),
		slog.Int("qos1_retry_limit", n.QoS1RetryLimit),
		slog.Duration("ping_interval", n.PingInterval),
		slog.Any("allowed_origins", n.AllowedOrigins),
		slog.String("log_level", levelName(n.LogLevel)),
		slog.String("log_format", n.LogFormat),
		slog.String("token_hmac_secret", redact(n.TokenHMACSecret)),
		slog.String("token_public_key", n.TokenPublicKey),
		slog.String("api_key", redact(n.APIKey)),
		slog.Int("max_subscriptions", n.MaxSubscriptions),
		slog.Int("send_queue_length", n.SendQueueLength),
		slog.Int("send_queue_bytes", n.SendQueueBytes),
	)
}

// redact hides a secret but keeps whether it is set, because an empty cluster
// secret (an open mesh) is worth seeing in the log.
func redact(secret string) string {
	if secret == "" {
		return ""
	}

	return redacted
}

// levelName returns the flag spelling of a level, such as "info".
func levelName(level slog.Level) string {
	return strings.ToLower(level.String())
}

// ValueError reports an invalid flag or variable value. Its message is one line
// that names the flag, where the value came from, the value and what is allowed.
type ValueError struct {
	// Flag is the flag name without the leading dashes, such as "ping-interval".
	Flag string
	// Env is the variable the value came from, or "" when it did not come from one.
	Env string
	// Default is true when the value is the default, for example the host name as node id.
	Default bool
	// Value is the invalid value, or "" when Redacted is true.
	Value string
	// Redacted is true when the value is a secret and so is not stored.
	Redacted bool
	// Err describes what is allowed.
	Err error
}

// Error returns the one-line message, such as
// `invalid value "abc" for --ping-interval: want a positive duration such as 10s`.
func (e *ValueError) Error() string {
	value := fmt.Sprintf("%q", e.Value)
	if e.Redacted {
		value = redacted
	}

	origin := ""
	switch {
	case e.Env != "":
		origin = " (from " + e.Env + ")"
	case e.Default:
		origin = " (default)"
	}

	return fmt.Sprintf("invalid value %s for --%s%s: %v", value, e.Flag, origin, e.Err)
}

// Unwrap returns the description of what is allowed.
func (e *ValueError) Unwrap() error {
	return e.Err
}
