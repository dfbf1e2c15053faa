package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "WSCLUSTER_"

// option describes one flag: its name, its help text and how it reads and
// writes its Node field.
type option struct {
	// name is the flag name without the leading dashes.
	name string
	// arg is the placeholder for the value in Usage, or "" for a boolean flag.
	arg string
	// usage describes what the flag sets and in what unit.
	usage string
	// secret hides the value in errors, Usage and logs.
	secret bool
	// defaultText replaces the Default() value in Usage where that value
	// depends on the machine, such as the host name.
	defaultText string
	binding
}

// binding reads and writes one Node field as flag text.
type binding struct {
	// get formats the field for Usage and for errors that quote another flag.
	get func(n Node) string
	// set validates value and stores it. Its error describes what is allowed and
	// never repeats the value, so a secret cannot leak through it.
	set func(n *Node, value string) error
}

// env returns the environment variable of the option, such as WSCLUSTER_PEER_TIMEOUT.
func (o option) env() string {
	return envName(o.name)
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// options lists every flag in the order of Usage and of validation, so the
// first invalid value reported is the first one in this list.
var options = []option{
	{name: "listen", arg: "HOST:PORT",
		usage:   "HTTP address of the WebSocket endpoint /ws and of /healthz, /readyz, /cluster and /metrics",
		binding: stringBinding(func(n *Node) *string { return &n.Listen }, listenAddrChecker(":8080 or 127.0.0.1:8080"))},
	{name: "node-id", arg: "ID", defaultText: "the host name",
		usage:   "id of this node, unique in the cluster and stable across restarts: 1-64 characters of A-Z a-z 0-9 . _ -",
		binding: stringBinding(func(n *Node) *string { return &n.NodeID }, checkNodeID)},
	{name: "engine", arg: "NAME",
		usage:   "backplane between nodes: none (a single node), mesh (nodes connect to each other over TCP) or redis (nodes share a Redis Pub/Sub channel)",
		binding: enumBinding(func(n *Node) *string { return &n.Engine }, "none", "mesh", "redis")},
	{name: "cluster-listen", arg: "HOST:PORT",
		usage:   "mesh: address of this node's cluster listener",
		binding: stringBinding(func(n *Node) *string { return &n.ClusterListen }, listenAddrChecker(":5410"))},
	{name: "cluster-advertise", arg: "HOST:PORT", defaultText: "the host name and the port of --cluster-listen",
		usage:   "mesh: address other nodes use to reach this node, with a port 1-65535",
		binding: stringBinding(func(n *Node) *string { return &n.ClusterAdvertise }, checkDialAddr)},
	{name: "peers", arg: "LIST", defaultText: "empty",
		usage:   "mesh: comma-separated host:port addresses of nodes to dial; a host may be a DNS name with several addresses",
		binding: peersBinding()},
	{name: "peer-exchange",
		usage:   "mesh: learn the addresses of further nodes from connected peers; turn it off with --peer-exchange=false",
		binding: boolBinding(func(n *Node) *bool { return &n.PeerExchange })},
	{name: "cluster-secret", arg: "SECRET", secret: true, defaultText: "empty",
		usage:   "mesh: shared secret every peer must prove it knows; empty means an open mesh, which the node logs as a warning",
		binding: stringBinding(func(n *Node) *string { return &n.ClusterSecret }, checkSecret)},
	{name: "cluster-tls-cert", arg: "FILE", defaultText: "empty",
		usage:   "mesh: PEM certificate of this node for mutual TLS on cluster links; needs --cluster-tls-key and --cluster-tls-ca",
		binding: stringBinding(func(n *Node) *string { return &n.ClusterTLSCert }, checkNoControl)},
	{name: "cluster-tls-key", arg: "FILE", defaultText: "empty",
		usage:   "mesh: PEM private key of --cluster-tls-cert",
		binding: stringBinding(func(n *Node) *string { return &n.ClusterTLSKey }, checkNoControl)},
	{name: "cluster-tls-ca", arg: "FILE", defaultText: "empty",
		usage:   "mesh: PEM certificate of the CA that signed every node's certificate; peers without one are rejected",
		binding: stringBinding(func(n *Node) *string { return &n.ClusterTLSCA }, checkNoControl)},
	{name: "redis-addr", arg: "HOST:PORT",
		usage:   "redis: address of the Redis server",
		binding: stringBinding(func(n *Node) *string { return &n.RedisAddr }, listenAddrChecker("127.0.0.1:6379"))},
	{name: "redis-username", arg: "NAME", defaultText: "empty",
		usage:   "redis: ACL user name; empty means the default user",
		binding: stringBinding(func(n *Node) *string { return &n.RedisUsername }, checkNoControl)},
	{name: "redis-password", arg: "SECRET", secret: true, defaultText: "empty",
		usage:   "redis: ACL password",
		binding: stringBinding(func(n *Node) *string { return &n.RedisPassword }, checkSecret)},
	{name: "redis-channel", arg: "NAME",
		usage:   "redis: the one Pub/Sub channel all nodes share",
		binding: stringBinding(func(n *Node) *string { return &n.RedisChannel }, checkChannel)},
	{name: "redis-tls",
		usage:   "redis: connect to Redis over TLS, verifying its certificate against the system roots or --redis-tls-ca",
		binding: boolBinding(func(n *Node) *bool { return &n.RedisTLS })},
	{name: "redis-tls-ca", arg: "FILE", defaultText: "the system roots",
		usage:   "redis: PEM file of the CA that signed the Redis server's certificate; implies --redis-tls",
		binding: stringBinding(func(n *Node) *string { return &n.RedisTLSCA }, checkNoControl)},
	{name: "redis-tls-cert", arg: "FILE", defaultText: "empty",
		usage:   "redis: PEM client certificate for Redis servers that require one; needs --redis-tls-key",
		binding: stringBinding(func(n *Node) *string { return &n.RedisTLSCert }, checkNoControl)},
	{name: "redis-tls-key", arg: "FILE", defaultText: "empty",
		usage:   "redis: PEM private key of --redis-tls-cert",
		binding: stringBinding(func(n *Node) *string { return &n.RedisTLSKey }, checkNoControl)},
	{name: "redis-sentinel-addrs", arg: "LIST", defaultText: "empty",
		usage:   "redis: comma-separated host:port addresses of Redis Sentinels; when set, the node finds the primary through them and follows a failover, and --redis-addr is ignored",
		binding: sentinelBinding()},
	{name: "redis-sentinel-master", arg: "NAME", defaultText: "empty",
		usage:   "redis: name of the primary the Sentinels monitor; required with --redis-sentinel-addrs",
		binding: stringBinding(func(n *Node) *string { return &n.RedisSentinelMaster }, checkNoControl)},
	{name: "ordering", arg: "MODE",
		usage:   "redis: local (a node delivers its own publishes at once) or total (only when Redis echoes them, so every node sees one order per channel)",
		binding: enumBinding(func(n *Node) *string { return &n.Ordering }, "local", "total")},
	{name: "heartbeat-interval", arg: "DURATION",
		usage:   "time between the heartbeats this node sends to its peers, as a Go duration such as 1s or 500ms",
		binding: durationBinding(func(n *Node) *time.Duration { return &n.HeartbeatInterval })},
	{name: "peer-timeout", arg: "DURATION",
		usage:   "silence after which a peer is down and its presence members are purged; must be greater than --heartbeat-interval",
		binding: durationBinding(func(n *Node) *time.Duration { return &n.PeerTimeout })},
	{name: "max-message-bytes", arg: "BYTES",
		usage:   "largest client frame accepted, in bytes from 256 to 67108864; a larger frame closes the connection with 1009",
		binding: intBinding(func(n *Node) *int { return &n.MaxMessageBytes }, 256, 64<<20)},
	{name: "qos1-retry-interval", arg: "DURATION",
		usage:   "time between redeliveries of an unacknowledged QoS 1 message",
		binding: durationBinding(func(n *Node) *time.Duration { return &n.QoS1RetryInterval })},
	{name: "qos1-retry-limit", arg: "COUNT",
		usage:   "redeliveries before an unacknowledged QoS 1 message is dropped and counted; 0 disables redelivery",
		binding: intBinding(func(n *Node) *int { return &n.QoS1RetryLimit }, 0, math.MaxInt)},
	{name: "ping-interval", arg: "DURATION",
		usage:   "interval of WebSocket pings to each client; a client that sends no pong within the same time is closed",
		binding: durationBinding(func(n *Node) *time.Duration { return &n.PingInterval })},
	{name: "allowed-origins", arg: "LIST", defaultText: "same origin only",
		usage:   "comma-separated origins scheme://host[:port] allowed to open a WebSocket; * allows any; a request without an Origin header is always allowed",
		binding: originsBinding()},
	{name: "log-level", arg: "LEVEL",
		usage:   "minimum level logged: debug, info, warn or error",
		binding: levelBinding()},
	{name: "log-format", arg: "FORMAT",
		usage:   "log output format: text or json",
		binding: enumBinding(func(n *Node) *string { return &n.LogFormat }, "text", "json")},
	{name: "token-hmac-secret", arg: "SECRET", secret: true, defaultText: "empty",
		usage:   "access control: verify client JWTs signed with HS256 and this secret; a client without a valid token is rejected with HTTP 401",
		binding: stringBinding(func(n *Node) *string { return &n.TokenHMACSecret }, checkSecret)},
	{name: "token-public-key", arg: "FILE", defaultText: "empty",
		usage:   "access control: verify client JWTs with the public key in this PEM file, RS256 for an RSA key and ES256 for an ECDSA P-256 key",
		binding: stringBinding(func(n *Node) *string { return &n.TokenPublicKey }, checkNoControl)},
	{name: "api-key", arg: "SECRET", secret: true, defaultText: "empty",
		usage:   "enables POST /api/publish for backends, which must send the header Authorization: Bearer <api-key>",
		binding: stringBinding(func(n *Node) *string { return &n.APIKey }, checkSecret)},
	{name: "max-subscriptions", arg: "COUNT",
		usage:   "channels one connection may subscribe to, at least 1; one more subscribe gets error 1003",
		binding: intBinding(func(n *Node) *int { return &n.MaxSubscriptions }, 1, math.MaxInt)},
	{name: "send-queue-length", arg: "COUNT",
		usage:   "frames queued for one connection, at least 16, before it is a slow consumer and is closed with 4008",
		binding: intBinding(func(n *Node) *int { return &n.SendQueueLength }, 16, math.MaxInt)},
	{name: "send-queue-bytes", arg: "BYTES",
		usage:   "bytes queued for one connection before it is a slow consumer and is closed with 4008; at least 2 x --max-message-bytes",
		binding: intBinding(func(n *Node) *int { return &n.SendQueueBytes }, 2*256, math.MaxInt)},
}

// lookupOption returns the option named name, which must exist.
func lookupOption(name string) option {
	for _, opt := range options {
		if opt.name == name {
			return opt
		}
	}

	panic("config: no option " + name)
}

func stringBinding(field func(*Node) *string, check func(string) error) binding {
	return binding{
		get: func(n Node) string { return *field(&n) },
		set: func(n *Node, value string) error {
			if err := check(value); err != nil {
				return err
			}

			*field(n) = value

			return nil
		},
	}
}

// enumBinding accepts one of allowed in any letter case and stores it in lower case.
func enumBinding(field func(*Node) *string, allowed ...string) binding {
	want := fmt.Errorf("want %s", orList(allowed))

	return binding{
		get: func(n Node) string { return *field(&n) },
		set: func(n *Node, value string) error {
			for _, name := range allowed {
				if strings.EqualFold(value, name) {
					*field(n) = name
					return nil
				}
			}

			return want
		},
	}
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}

	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

var errBool = errors.New("want true or false")

func boolBinding(field func(*Node) *bool) binding {
	return binding{
		get: func(n Node) string { return strconv.FormatBool(*field(&n)) },
		set: func(n *Node, value string) error {
			parsed, err := strconv.ParseBool(value)
			if err != nil {
				return errBool
			}

			*field(n) = parsed

			return nil
		},
	}
}

var errDuration = errors.New("want a positive duration such as 10s")

func durationBinding(field func(*Node) *time.Duration) binding {
	return binding{
		get: func(n Node) string { return field(&n).String() },
		set: func(n *Node, value string) error {
			parsed, err := time.ParseDuration(value)
			if err != nil || parsed <= 0 {
				return errDuration
			}

			*field(n) = parsed

			return nil
		},
	}
}

// intBinding accepts a decimal integer from low to high inclusive.
func intBinding(field func(*Node) *int, low, high int) binding {
	want := fmt.Errorf("want an integer from %d to %d", low, high)
	if high == math.MaxInt {
		want = fmt.Errorf("want an integer of at least %d", low)
	}

	return binding{
		get: func(n Node) string { return strconv.Itoa(*field(&n)) },
		set: func(n *Node, value string) error {
			parsed, err := strconv.Atoi(value)
			if err != nil || parsed < low || parsed > high {
				return want
			}

			*field(n) = parsed

			return nil
		},
	}
}

// peersBinding accepts a comma-separated list of host:port addresses of other
// nodes and stores it without duplicates, or nil when it is empty.
func peersBinding() binding {
	return binding{
		get: func(n Node) string { return strings.Join(n.Peers, ",") },
		set: func(n *Node, value string) error {
			entries := splitList(value)

			var peers []string
			for _, entry := range entries {
				if err := checkDialAddr(entry); err != nil {
					return entryError(entries, entry, err)
				}

				peers = appendNew(peers, entry)
			}

			n.Peers = peers

			return nil
		},
	}
}

func sentinelBinding() binding {
	return binding{
		get: func(n Node) string { return strings.Join(n.RedisSentinelAddrs, ",") },
		set: func(n *Node, value string) error {
			entries := splitList(value)
			var addrs []string
			for _, entry := range entries {
				if err := checkDialAddr(entry); err != nil {
					return entryError(entries, entry, err)
				}
				addrs = appendNew(addrs, entry)
			}
			n.RedisSentinelAddrs = addrs
			return nil
		},
	}
}

func originsBinding() binding {
	return binding{
		get: func(n Node) string { return strings.Join(n.AllowedOrigins, ",") },
		set: func(n *Node, value string) error {
			origins, err := parseOrigins(value)
			if err != nil {
				return err
			}

			n.AllowedOrigins = origins

			return nil
		},
	}
}

var errLevel = errors.New("want debug, info, warn or error")

// levelBinding accepts the four level names of slog in any letter case, but
// not the offsets such as "info+2" that slog.Level.UnmarshalText also accepts.
func levelBinding() binding {
	levels := map[string]slog.Level{
		"debug": slog.LevelDebug,
		"info":  slog.LevelInfo,
		"warn":  slog.LevelWarn,
		"error": slog.LevelError,
	}

	return binding{
		get: func(n Node) string { return levelName(n.LogLevel) },
		set: func(n *Node, value string) error {
			level, ok := levels[strings.ToLower(value)]
			if !ok {
				return errLevel
			}

			n.LogLevel = level

			return nil
		},
	}
}

// Usage writes the help text of every flag to w: its name, what it sets with
// the unit, its default and its environment variable. It never shows the value of a secret.
func Usage(w io.Writer) {
	defaultNode := defaults("")

	var b strings.Builder
	b.WriteString("Flags of wscluster serve. Each flag --foo-bar can also be set by the environment\n")
	b.WriteString("variable WSCLUSTER_FOO_BAR, and a flag wins over its variable.\n")

	for _, opt := range options {
		b.WriteString("\n  --" + opt.name)
		if opt.arg != "" {
			b.WriteString(" " + opt.arg)
		}

		fmt.Fprintf(&b, "\n        %s\n", opt.usage)
		fmt.Fprintf(&b, "        default: %s; env: %s\n", usageDefault(opt, defaultNode), opt.env())
	}

	// A failed write has no better place to be reported than the writer itself.
	_, _ = io.WriteString(w, b.String())
}

// usageDefault returns the default of opt as Usage shows it.
func usageDefault(opt option, defaultNode Node) string {
	if opt.defaultText != "" {
		return opt.defaultText
	}

	if opt.secret {
		return "empty"
	}

	return opt.get(defaultNode)
}
