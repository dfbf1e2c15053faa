package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testHost is the host name the tests pass instead of os.Hostname.
const testHost = "node1.example.com"

// envMap returns a lookupEnv function that reads vars.
func envMap(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		value, ok := vars[name]
		return value, ok
	}
}

func TestDefaultValues(t *testing.T) {
	n := defaults(testHost)

	assert.Equal(t, ":8080", n.Listen)
	assert.Equal(t, testHost, n.NodeID)
	assert.Equal(t, "none", n.Engine)
	assert.Equal(t, ":5410", n.ClusterListen)
	assert.Equal(t, testHost+":5410", n.ClusterAdvertise)
	assert.Nil(t, n.Peers)
	assert.True(t, n.PeerExchange)
	assert.Empty(t, n.ClusterSecret)
	assert.Equal(t, "127.0.0.1:6379", n.RedisAddr)
	assert.Empty(t, n.RedisUsername)
	assert.Empty(t, n.RedisPassword)
	assert.Equal(t, "wscluster", n.RedisChannel)
	assert.Equal(t, time.Second, n.HeartbeatInterval)
	assert.Equal(t, 3*time.Second, n.PeerTimeout)
	assert.Equal(t, 65536, n.MaxMessageBytes)
	assert.Equal(t, 2*time.Second, n.QoS1RetryInterval)
	assert.Equal(t, 5, n.QoS1RetryLimit)
	assert.Equal(t, 10*time.Second, n.PingInterval)
	assert.Nil(t, n.AllowedOrigins)
	assert.Equal(t, slog.LevelInfo, n.LogLevel)
	assert.Equal(t, "text", n.LogFormat)
	assert.Equal(t, 1024, n.MaxSubscriptions)
	assert.Equal(t, 4096, n.SendQueueLength)
	assert.Equal(t, 4194304, n.SendQueueBytes)
}

func TestDefaultUsesHostName(t *testing.T) {
	n := Default()
	host := hostname()

	assert.Equal(t, host, n.NodeID)
	if host != "" {
		assert.Equal(t, host+":5410", n.ClusterAdvertise)
	}
}

func TestParseNoArgumentsGivesDefaults(t *testing.T) {
	n, err := parse(nil, envMap(nil), testHost)
	require.NoError(t, err)
	assert.Equal(t, defaults(testHost), n)

	n, err = parse([]string{}, nil, testHost)
	require.NoError(t, err)
	assert.Equal(t, defaults(testHost), n)
}

func TestParseValidValues(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, n Node)
	}{
		{"listen with space", []string{"--listen", "127.0.0.1:9000"}, func(t *testing.T, n Node) { assert.Equal(t, "127.0.0.1:9000", n.Listen) }},
		{"listen with equals", []string{"--listen=:0"}, func(t *testing.T, n Node) { assert.Equal(t, ":0", n.Listen) }},
		{"listen single dash", []string{"-listen", "[::1]:80"}, func(t *testing.T, n Node) { assert.Equal(t, "[::1]:80", n.Listen) }},
		{"node id", []string{"--node-id", "a.B_c-9"}, func(t *testing.T, n Node) { assert.Equal(t, "a.B_c-9", n.NodeID) }},
		{"node id 64 chars", []string{"--node-id", strings.Repeat("x", 64)}, func(t *testing.T, n Node) { assert.Len(t, n.NodeID, 64) }},
		{"engine mesh", []string{"--engine", "mesh"}, func(t *testing.T, n Node) { assert.Equal(t, "mesh", n.Engine) }},
		{"engine upper case", []string{"--engine", "REDIS"}, func(t *testing.T, n Node) { assert.Equal(t, "redis", n.Engine) }},
		{"peer exchange bare", []string{"--peer-exchange"}, func(t *testing.T, n Node) { assert.True(t, n.PeerExchange) }},
		{"peer exchange false", []string{"--peer-exchange=false"}, func(t *testing.T, n Node) { assert.False(t, n.PeerExchange) }},
		{"peer exchange 0", []string{"--peer-exchange=0"}, func(t *testing.T, n Node) { assert.False(t, n.PeerExchange) }},
		{"cluster secret", []string{"--cluster-secret", "s3cret value"}, func(t *testing.T, n Node) { assert.Equal(t, "s3cret value", n.ClusterSecret) }},
		{"redis credentials", []string{"--redis-username", "app", "--redis-password", "pw"}, func(t *testing.T, n Node) {
			assert.Equal(t, "app", n.RedisUsername)
			assert.Equal(t, "pw", n.RedisPassword)
		}},
		{"redis addr by name", []string{"--redis-addr", "redis:6379"}, func(t *testing.T, n Node) { assert.Equal(t, "redis:6379", n.RedisAddr) }},
		{"redis channel unicode", []string{"--redis-channel", "wsc:é*?"}, func(t *testing.T, n Node) { assert.Equal(t, "wsc:é*?", n.RedisChannel) }},
		{"durations", []string{"--heartbeat-interval", "250ms", "--peer-timeout", "1s", "--qos1-retry-interval", "1m", "--ping-interval", "1h"}, func(t *testing.T, n Node) {
			assert.Equal(t, 250*time.Millisecond, n.HeartbeatInterval)
			assert.Equal(t, time.Second, n.PeerTimeout)
			assert.Equal(t, time.Minute, n.QoS1RetryInterval)
			assert.Equal(t, time.Hour, n.PingInterval)
		}},
		{"max message bytes bounds", []string{"--max-message-bytes", "67108864", "--send-queue-bytes", "134217728"}, func(t *testing.T, n Node) {
			assert.Equal(t, 67108864, n.MaxMessageBytes)
			assert.Equal(t, 134217728, n.SendQueueBytes)
		}},
		{"small max message bytes", []string{"--max-message-bytes=256", "--send-queue-bytes=512"}, func(t *testing.T, n Node) {
			assert.Equal(t, 256, n.MaxMessageBytes)
			assert.Equal(t, 512, n.SendQueueBytes)
		}},
		{"qos1 retry limit 0", []string{"--qos1-retry-limit", "0"}, func(t *testing.T, n Node) { assert.Equal(t, 0, n.QoS1RetryLimit) }},
		{"log level debug", []string{"--log-level", "debug"}, func(t *testing.T, n Node) { assert.Equal(t, slog.LevelDebug, n.LogLevel) }},
		{"log level upper case", []string{"--log-level", "WARN"}, func(t *testing.T, n Node) { assert.Equal(t, slog.LevelWarn, n.LogLevel) }},
		{"log level error", []string{"--log-level", "error"}, func(t *testing.T, n Node) { assert.Equal(t, slog.LevelError, n.LogLevel) }},
		{"log format json", []string{"--log-format", "json"}, func(t *testing.T, n Node) { assert.Equal(t, "json", n.LogFormat) }},
		{"extensions", []string{"--max-subscriptions", "1", "--send-queue-length", "16"}, func(t *testing.T, n Node) {
			assert.Equal(t, 1, n.MaxSubscriptions)
			assert.Equal(t, 16, n.SendQueueLength)
		}},
		{"flag given twice keeps last", []string{"--listen", ":1", "--listen", ":2"}, func(t *testing.T, n Node) { assert.Equal(t, ":2", n.Listen) }},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := parse(tt.args, envMap(nil), testHost)
			require.NoError(t, err)
			tt.check(t, n)
		})
	}
}

func TestParseFlagBeatsEnv(t *testing.T) {
	env := envMap(map[string]string{
		"WSCLUSTER_LISTEN":        ":7000",
		"WSCLUSTER_PEER_EXCHANGE": "false",
		"WSCLUSTER_PEERS":         "a.example.com:1",
		"WSCLUSTER_PING_INTERVAL": "5s",
		"WSCLUSTER_LOG_LEVEL":     "error",
	})

	n, err := parse([]string{"--listen", ":9000", "--peer-exchange", "--peers=", "--ping-interval=7s", "--log-level=debug"}, env, testHost)
	require.NoError(t, err)

	assert.Equal(t, ":9000", n.Listen)
	assert.True(t, n.PeerExchange)
	assert.Nil(t, n.Peers)
	assert.Equal(t, 7*time.Second, n.PingInterval)
	assert.Equal(t, slog.LevelDebug, n.LogLevel)
}

func TestParseFlagHidesInvalidEnv(t *testing.T) {
	env := envMap(map[string]string{"WSCLUSTER_PING_INTERVAL": "abc"})

	n, err := parse([]string{"--ping-interval", "4s"}, env, testHost)
	require.NoError(t, err)
	assert.Equal(t, 4*time.Second, n.PingInterval)
}

func TestParseEnvWhenFlagAbsent(t *testing.T) {
	env := envMap(map[string]string{
		"WSCLUSTER_LISTEN":              "127.0.0.1:8081",
		"WSCLUSTER_NODE_ID":             "from-env",
		"WSCLUSTER_ENGINE":              "mesh",
		"WSCLUSTER_CLUSTER_LISTEN":      ":6000",
		"WSCLUSTER_CLUSTER_ADVERTISE":   "me.example.com:6000",
		"WSCLUSTER_PEERS":               "b.example.com:6000, c.example.com:6000",
		"WSCLUSTER_PEER_EXCHANGE":       "false",
		"WSCLUSTER_CLUSTER_SECRET":      "shh",
		"WSCLUSTER_REDIS_ADDR":          "localhost:6380",
		"WSCLUSTER_REDIS_USERNAME":      "user",
		"WSCLUSTER_REDIS_PASSWORD":      "pw",
		"WSCLUSTER_REDIS_CHANNEL":       "chan",
		"WSCLUSTER_HEARTBEAT_INTERVAL":  "2s",
		"WSCLUSTER_PEER_TIMEOUT":        "6s",
		"WSCLUSTER_MAX_MESSAGE_BYTES":   "1024",
		"WSCLUSTER_QOS1_RETRY_INTERVAL": "3s",
		"WSCLUSTER_QOS1_RETRY_LIMIT":    "9",
		"WSCLUSTER_PING_INTERVAL":       "20s",
		"WSCLUSTER_ALLOWED_ORIGINS":     "https://App.example.com",
		"WSCLUSTER_LOG_LEVEL":           "warn",
		"WSCLUSTER_LOG_FORMAT":          "json",
		"WSCLUSTER_MAX_SUBSCRIPTIONS":   "10",
		"WSCLUSTER_SEND_QUEUE_LENGTH":   "100",
		"WSCLUSTER_SEND_QUEUE_BYTES":    "4096",
	})

	n, err := parse(nil, env, testHost)
	require.NoError(t, err)

	want := Node{
		Listen:            "127.0.0.1:8081",
		NodeID:            "from-env",
		Engine:            "mesh",
		ClusterListen:     ":6000",
		ClusterAdvertise:  "me.example.com:6000",
		Peers:             []string{"b.example.com:6000", "c.example.com:6000"},
		PeerExchange:      false,
		ClusterSecret:     "shh",
		RedisAddr:         "localhost:6380",
		RedisUsername:     "user",
		RedisPassword:     "pw",
		RedisChannel:      "chan",
		Ordering:          "local",
		HeartbeatInterval: 2 * time.Second,
		PeerTimeout:       6 * time.Second,
		MaxMessageBytes:   1024,
		QoS1RetryInterval: 3 * time.Second,
		QoS1RetryLimit:    9,
		PingInterval:      20 * time.Second,
		AllowedOrigins:    []string{"https://app.example.com"},
		LogLevel:          slog.LevelWarn,
		LogFormat:         "json",
		MaxSubscriptions:  10,
		SendQueueLength:   100,
		SendQueueBytes:    4096,
	}
	assert.Equal(t, want, n)
}

func TestEveryFlagHasEnvVariable(t *testing.T) {
	for _, opt := range options {
		want := "WSCLUSTER_" + strings.ToUpper(strings.ReplaceAll(opt.name, "-", "_"))
		assert.Equal(t, want, opt.env(), opt.name)
	}
}

func TestParseInvalidValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// flag and value must both appear in the error.
		flag  string
		value string
		// want is a fragment of the description of what is allowed.
		want string
	}{
		{name: "listen without port", args: []string{"--listen", "localhost"}, flag: "listen", value: "localhost", want: "host:port"},
		{name: "listen port name", args: []string{"--listen", ":http"}, flag: "listen", value: ":http", want: "numeric port 0-65535"},
		{name: "listen port too big", args: []string{"--listen", ":65536"}, flag: "listen", value: ":65536", want: "0-65535"},
		{name: "listen empty port", args: []string{"--listen", "host:"}, flag: "listen", value: "host:", want: "host:port"},
		{name: "listen bad host", args: []string{"--listen", "a b:80"}, flag: "listen", value: "a b:80", want: "host:port"},
		{name: "listen empty", args: []string{"--listen="}, flag: "listen", value: "", want: "host:port"},
		{name: "listen bracket name", args: []string{"--listen", "[name]:80"}, flag: "listen", value: "[name]:80", want: "host:port"},
		{name: "cluster listen", args: []string{"--cluster-listen", "5410"}, flag: "cluster-listen", value: "5410", want: "host:port"},
		{name: "redis addr", args: []string{"--redis-addr", "::1:6379"}, flag: "redis-addr", value: "::1:6379", want: "host:port"},
		{name: "advertise without host", args: []string{"--cluster-advertise", ":5410"}, flag: "cluster-advertise", value: ":5410", want: "non-empty host"},
		{name: "advertise port 0", args: []string{"--cluster-advertise", "a.example.com:0"}, flag: "cluster-advertise", value: "a.example.com:0", want: "port 1-65535"},
		{name: "peers entry without host", args: []string{"--peers", "a.example.com:1,:5410"}, flag: "peers", value: "a.example.com:1,:5410", want: `entry ":5410"`},
		{name: "peers entry port 0", args: []string{"--peers", "a.example.com:0"}, flag: "peers", value: "a.example.com:0", want: "port 1-65535"},
		{name: "node id empty", args: []string{"--node-id="}, flag: "node-id", value: "", want: "1-64 characters"},
		{name: "node id too long", args: []string{"--node-id", strings.Repeat("n", 65)}, flag: "node-id", value: strings.Repeat("n", 65), want: "1-64 characters"},
		{name: "node id space", args: []string{"--node-id", "node 1"}, flag: "node-id", value: "node 1", want: "A-Z a-z 0-9 . _ -"},
		{name: "node id colon", args: []string{"--node-id", "node:1"}, flag: "node-id", value: "node:1", want: "1-64 characters"},
		{name: "engine", args: []string{"--engine", "kafka"}, flag: "engine", value: "kafka", want: "want none, mesh or redis"},
		{name: "peer exchange", args: []string{"--peer-exchange=maybe"}, flag: "peer-exchange", value: "maybe", want: "want true or false"},
		{name: "redis channel empty", args: []string{"--redis-channel="}, flag: "redis-channel", value: "", want: "non-empty"},
		{name: "redis channel control", args: []string{"--redis-channel", "a\x7fb"}, flag: "redis-channel", value: "a\x7fb", want: "control characters"},
		{name: "redis channel C1 control", args: []string{"--redis-channel", "a\u0085b"}, flag: "redis-channel", value: "a\u0085b", want: "control characters"},
		{name: "redis channel invalid UTF-8", args: []string{"--redis-channel", "a\xffb"}, flag: "redis-channel", value: "a\xffb", want: "UTF-8"},
		{name: "redis username control", args: []string{"--redis-username", "a\nb"}, flag: "redis-username", value: "a\nb", want: "control characters"},
		{name: "duration without unit", args: []string{"--ping-interval", "10"}, flag: "ping-interval", value: "10", want: "want a positive duration such as 10s"},
		{name: "duration text", args: []string{"--ping-interval", "abc"}, flag: "ping-interval", value: "abc", want: "want a positive duration such as 10s"},
		{name: "duration zero", args: []string{"--heartbeat-interval", "0s"}, flag: "heartbeat-interval", value: "0s", want: "positive duration"},
		{name: "duration negative", args: []string{"--qos1-retry-interval", "-1s"}, flag: "qos1-retry-interval", value: "-1s", want: "positive duration"},
		{name: "peer timeout zero", args: []string{"--peer-timeout", "0"}, flag: "peer-timeout", value: "0", want: "positive duration"},
		{name: "max message bytes low", args: []string{"--max-message-bytes", "255"}, flag: "max-message-bytes", value: "255", want: "from 256 to 67108864"},
		{name: "max message bytes high", args: []string{"--max-message-bytes", "67108865"}, flag: "max-message-bytes", value: "67108865", want: "from 256 to 67108864"},
		{name: "max message bytes text", args: []string{"--max-message-bytes", "64KiB"}, flag: "max-message-bytes", value: "64KiB", want: "integer"},
		{name: "retry limit negative", args: []string{"--qos1-retry-limit", "-1"}, flag: "qos1-retry-limit", value: "-1", want: "at least 0"},
		{name: "retry limit overflow", args: []string{"--qos1-retry-limit", "99999999999999999999"}, flag: "qos1-retry-limit", value: "99999999999999999999", want: "at least 0"},
		{name: "max subscriptions zero", args: []string{"--max-subscriptions", "0"}, flag: "max-subscriptions", value: "0", want: "at least 1"},
		{name: "send queue length", args: []string{"--send-queue-length", "15"}, flag: "send-queue-length", value: "15", want: "at least 16"},
		{name: "send queue bytes", args: []string{"--send-queue-bytes", "511"}, flag: "send-queue-bytes", value: "511", want: "at least 512"},
		{name: "log level", args: []string{"--log-level", "trace"}, flag: "log-level", value: "trace", want: "debug, info, warn or error"},
		{name: "log level offset", args: []string{"--log-level", "info+2"}, flag: "log-level", value: "info+2", want: "debug, info, warn or error"},
		{name: "log format", args: []string{"--log-format", "xml"}, flag: "log-format", value: "xml", want: "want text or json"},
		{name: "origins star mixed", args: []string{"--allowed-origins", "*,https://a.example.com"}, flag: "allowed-origins", value: "*,https://a.example.com", want: `entry "*"`},
		{name: "env duration", env: map[string]string{"WSCLUSTER_PING_INTERVAL": "abc"}, flag: "ping-interval", value: "abc", want: "(from WSCLUSTER_PING_INTERVAL): want a positive duration"},
		{name: "env engine", env: map[string]string{"WSCLUSTER_ENGINE": ""}, flag: "engine", value: "", want: "(from WSCLUSTER_ENGINE)"},
		{name: "env listen", env: map[string]string{"WSCLUSTER_LISTEN": "nope"}, flag: "listen", value: "nope", want: "(from WSCLUSTER_LISTEN)"},
		{name: "unused engine flag still checked", args: []string{"--engine", "none", "--redis-addr", "redis"}, flag: "redis-addr", value: "redis", want: "host:port"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.args, envMap(tt.env), testHost)
			require.Error(t, err)

			msg := err.Error()
			assert.Contains(t, msg, "for --"+tt.flag)
			assert.Contains(t, msg, fmt.Sprintf("%q", tt.value))
			assert.Contains(t, msg, tt.want)
			assert.NotContains(t, msg, "\n")
			assert.True(t, strings.HasPrefix(msg, "invalid value "), msg)

			var valueErr *ValueError
			require.ErrorAs(t, err, &valueErr)
			assert.Equal(t, tt.flag, valueErr.Flag)
			assert.Equal(t, tt.value, valueErr.Value)
		})
	}
}

func TestParseErrorMessageFormat(t *testing.T) {
	_, err := parse([]string{"--ping-interval", "abc"}, nil, testHost)
	require.Error(t, err)
	assert.Equal(t, `invalid value "abc" for --ping-interval: want a positive duration such as 10s`, err.Error())

	_, err = parse(nil, envMap(map[string]string{"WSCLUSTER_PING_INTERVAL": "abc"}), testHost)
	require.Error(t, err)
	assert.Equal(t, `invalid value "abc" for --ping-interval (from WSCLUSTER_PING_INTERVAL): want a positive duration such as 10s`, err.Error())

	var valueErr *ValueError
	require.ErrorAs(t, err, &valueErr)
	assert.Equal(t, "WSCLUSTER_PING_INTERVAL", valueErr.Env)
	assert.False(t, valueErr.Default)
}

func TestParseReportsFirstInvalidFlag(t *testing.T) {
	_, err := parse([]string{"--log-format", "xml", "--listen", "bad"}, nil, testHost)
	require.Error(t, err)

	var valueErr *ValueError
	require.ErrorAs(t, err, &valueErr)
	assert.Equal(t, "listen", valueErr.Flag)
}

func TestSecretsRedactedInErrors(t *testing.T) {
	const secret = "hunter2\n"

	tests := []struct {
		name string
		args []string
		env  map[string]string
		flag string
		from string
	}{
		{name: "cluster secret flag", args: []string{"--cluster-secret", secret}, flag: "cluster-secret"},
		{name: "cluster secret env", env: map[string]string{"WSCLUSTER_CLUSTER_SECRET": secret}, flag: "cluster-secret", from: "WSCLUSTER_CLUSTER_SECRET"},
		{name: "redis password flag", args: []string{"--redis-password=" + secret}, flag: "redis-password"},
		{name: "redis password env", env: map[string]string{"WSCLUSTER_REDIS_PASSWORD": secret}, flag: "redis-password", from: "WSCLUSTER_REDIS_PASSWORD"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.args, envMap(tt.env), testHost)
			require.Error(t, err)

			msg := err.Error()
			assert.NotContains(t, msg, "hunter2")
			assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), "hunter2")
			assert.Contains(t, msg, "invalid value [redacted] for --"+tt.flag)
			assert.Contains(t, msg, "trailing newline")
			if tt.from != "" {
				assert.Contains(t, msg, "(from "+tt.from+")")
			}

			var valueErr *ValueError
			require.ErrorAs(t, err, &valueErr)
			assert.True(t, valueErr.Redacted)
			assert.Empty(t, valueErr.Value)
		})
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	n, err := parse([]string{"--cluster-secret", "mesh-secret-value", "--redis-password", "redis-secret-value", "--redis-username", "app"}, nil, testHost)
	require.NoError(t, err)

	var out bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&out, nil))
	logger.Info("config", "config", n)

	line := out.String()
	assert.NotContains(t, line, "mesh-secret-value")
	assert.NotContains(t, line, "redis-secret-value")

	var record struct {
		Config map[string]any `json:"config"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &record))
	assert.Equal(t, "[redacted]", record.Config["cluster_secret"])
	assert.Equal(t, "[redacted]", record.Config["redis_password"])
	assert.Equal(t, "app", record.Config["redis_username"])
	assert.Equal(t, testHost, record.Config["node_id"])
	assert.Equal(t, "info", record.Config["log_level"])
	assert.Len(t, record.Config, len(options))
}

func TestLogValueShowsEmptySecret(t *testing.T) {
	value := defaults(testHost).LogValue()

	attrs := make(map[string]slog.Value)
	for _, attr := range value.Group() {
		attrs[attr.Key] = attr.Value
	}

	assert.Empty(t, attrs["cluster_secret"].String())
	assert.Empty(t, attrs["redis_password"].String())
}

func TestParseCommaLists(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  []string
	}{
		{"empty", "", nil},
		{"only separators", " , ,, ", nil},
		{"one", "a.example.com:5410", []string{"a.example.com:5410"}},
		{"spaces trimmed", " a.example.com:1 , b.example.com:2 ", []string{"a.example.com:1", "b.example.com:2"}},
		{"empty entries dropped", "a.example.com:1,,b.example.com:2,", []string{"a.example.com:1", "b.example.com:2"}},
		{"duplicates dropped", "a.example.com:1,b.example.com:2,a.example.com:1", []string{"a.example.com:1", "b.example.com:2"}},
		{"ip addresses", "127.0.0.1:5410,[::1]:5411", []string{"127.0.0.1:5410", "[::1]:5411"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := parse([]string{"--peers", tt.value}, nil, testHost)
			require.NoError(t, err)
			assert.Equal(t, tt.want, n.Peers)

			n, err = parse(nil, envMap(map[string]string{"WSCLUSTER_PEERS": tt.value}), testHost)
			require.NoError(t, err)
			assert.Equal(t, tt.want, n.Peers)
		})
	}
}

func TestAllowedOriginsNormalised(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  []string
	}{
		{"empty means same origin", "", nil},
		{"only separators", " , ", nil},
		{"any", "*", []string{"*"}},
		{"any with spaces", " * ", []string{"*"}},
		{"lower case", "HTTPS://App.Example.COM", []string{"https://app.example.com"}},
		{"port kept", "http://localhost:3000", []string{"http://localhost:3000"}},
		{"https default port dropped", "https://example.com:443", []string{"https://example.com"}},
		{"http default port dropped", "http://example.com:80", []string{"http://example.com"}},
		{"port on other scheme kept", "http://example.com:443", []string{"http://example.com:443"}},
		{"leading zero port", "https://example.com:08443", []string{"https://example.com:8443"}},
		{"ipv6", "http://[::1]:8080", []string{"http://[::1]:8080"}},
		{"ipv6 without port", "https://[::1]", []string{"https://[::1]"}},
		{"list", "https://a.example.com, http://B.example.com:8080", []string{"https://a.example.com", "http://b.example.com:8080"}},
		{"duplicates after normalising", "https://a.example.com,HTTPS://A.example.com:443", []string{"https://a.example.com"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := parse([]string{"--allowed-origins", tt.value}, nil, testHost)
			require.NoError(t, err)
			assert.Equal(t, tt.want, n.AllowedOrigins)
		})
	}
}

func TestAllowedOriginsInvalid(t *testing.T) {
	values := []string{
		"example.com",
		"ftp://example.com",
		"https://example.com/",
		"https://example.com/app",
		"https://example.com?x=1",
		"https://example.com?",
		"https://example.com#top",
		"https://example.com#",
		"https://user@example.com",
		"https://user:pw@example.com",
		"https://",
		"https://example.com:",
		"https://example.com:0",
		"https://example.com:65536",
		"https://*.example.com",
		"https://[name]",
		"null",
		"mailto:a@example.com",
		"**",
	}

	for _, value := range values {
		t.Run(value, func(t *testing.T) {
			_, err := parse([]string{"--allowed-origins", value}, nil, testHost)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "--allowed-origins")
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", value))
			assert.Contains(t, err.Error(), "scheme://host[:port]")
		})
	}
}

func TestCrossFlagChecks(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// flag is the flag blamed, and value its value in the error.
		flag  string
		value string
		// other is the second flag that the error names.
		other string
		// origin is "" for a flag, " (default)" or " (from VAR)".
		origin string
	}{
		{name: "peer timeout equal", args: []string{"--peer-timeout", "1s"}, flag: "peer-timeout", value: "1s", other: "--heartbeat-interval"},
		{name: "peer timeout below", args: []string{"--heartbeat-interval", "2s", "--peer-timeout", "1500ms"}, flag: "peer-timeout", value: "1500ms", other: "--heartbeat-interval"},
		{name: "heartbeat over default timeout", args: []string{"--heartbeat-interval", "5s"}, flag: "heartbeat-interval", value: "5s", other: "--peer-timeout"},
		{name: "peer timeout from env", env: map[string]string{"WSCLUSTER_PEER_TIMEOUT": "500ms"}, flag: "peer-timeout", value: "500ms", other: "--heartbeat-interval", origin: " (from WSCLUSTER_PEER_TIMEOUT)"},
		{name: "queue bytes below twice message", args: []string{"--send-queue-bytes", "131071"}, flag: "send-queue-bytes", value: "131071", other: "--max-message-bytes"},
		{name: "message bytes over half queue", args: []string{"--max-message-bytes", "4194304"}, flag: "max-message-bytes", value: "4194304", other: "--send-queue-bytes"},
		{name: "both queue flags given", args: []string{"--max-message-bytes", "1024", "--send-queue-bytes", "2047"}, flag: "send-queue-bytes", value: "2047", other: "--max-message-bytes"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.args, envMap(tt.env), testHost)
			require.Error(t, err)

			msg := err.Error()
			assert.Contains(t, msg, fmt.Sprintf("invalid value %q for --%s%s: ", tt.value, tt.flag, tt.origin))
			assert.Contains(t, msg, tt.other)
			assert.NotContains(t, msg, "\n")
		})
	}
}

func TestCrossFlagChecksPass(t *testing.T) {
	n, err := parse([]string{"--heartbeat-interval", "5s", "--peer-timeout", "5001ms", "--max-message-bytes", "1024", "--send-queue-bytes", "2048"}, nil, testHost)
	require.NoError(t, err)
	assert.Equal(t, 5001*time.Millisecond, n.PeerTimeout)
	assert.Equal(t, 2048, n.SendQueueBytes)
}

func TestNodeIDDefaultFromHostName(t *testing.T) {
	tests := []struct {
		name string
		host string
	}{
		{"invalid character", "my host"},
		{"too long", strings.Repeat("h", 65)},
		{"unknown", ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(nil, nil, tt.host)
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("invalid value %q for --node-id (default)", tt.host))
			assert.Contains(t, err.Error(), "pass --node-id")

			n, err := parse([]string{"--node-id", "n1"}, nil, tt.host)
			require.NoError(t, err)
			assert.Equal(t, "n1", n.NodeID)

			n, err = parse(nil, envMap(map[string]string{"WSCLUSTER_NODE_ID": "n2"}), tt.host)
			require.NoError(t, err)
			assert.Equal(t, "n2", n.NodeID)
		})
	}
}

func TestClusterAdvertiseDefault(t *testing.T) {
	n, err := parse([]string{"--engine", "mesh", "--cluster-listen", "127.0.0.1:6000"}, nil, "node7")
	require.NoError(t, err)
	assert.Equal(t, "node7:6000", n.ClusterAdvertise)

	n, err = parse([]string{"--engine", "mesh", "--cluster-listen", ":6000", "--cluster-advertise", "public.example.com:7000"}, nil, "node7")
	require.NoError(t, err)
	assert.Equal(t, "public.example.com:7000", n.ClusterAdvertise)
}

func TestClusterAdvertiseDefaultUnusable(t *testing.T) {
	// With port 0 the real cluster port is unknown until the listener starts,
	// so a mesh node needs --cluster-advertise.
	_, err := parse([]string{"--engine", "mesh", "--cluster-listen", "127.0.0.1:0", "--node-id", "n1"}, nil, "node7")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid value "node7:0" for --cluster-advertise (default)`)
	assert.Contains(t, err.Error(), "pass --cluster-advertise")

	_, err = parse([]string{"--engine", "mesh", "--node-id", "n1"}, nil, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--cluster-advertise (default)")

	// Another engine never uses the address, so it starts anyway.
	n, err := parse([]string{"--engine", "redis", "--cluster-listen", "127.0.0.1:0", "--node-id", "n1"}, nil, "node7")
	require.NoError(t, err)
	assert.Equal(t, "redis", n.Engine)
}

func TestParseUnknownFlag(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"--no-such-flag=1"}, {"-x"}} {
		_, err := parse(args, nil, testHost)
		require.Error(t, err, args)
		assert.Contains(t, err.Error(), "not defined", args)
		assert.Contains(t, err.Error(), "--help", args)
		assert.NotErrorIs(t, err, ErrHelp)
	}
}

func TestParseMissingFlagValue(t *testing.T) {
	_, err := parse([]string{"--listen"}, nil, testHost)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "needs an argument")
	assert.Contains(t, err.Error(), "listen")
}

func TestParsePositionalArgument(t *testing.T) {
	tests := []struct {
		name string
		args []string
		arg  string
	}{
		{"bare word", []string{"extra"}, "extra"},
		{"after flags", []string{"--listen", ":1", "extra"}, "extra"},
		{"boolean value with space", []string{"--peer-exchange", "false"}, "false"},
		{"after terminator", []string{"--", "--listen"}, "--listen"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.args, nil, testHost)
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("unexpected argument %q", tt.arg))
			assert.Contains(t, err.Error(), "--peer-exchange=false")
		})
	}
}

func TestParseHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help", "--h"} {
		_, err := parse([]string{"--listen", ":1", arg}, nil, testHost)
		require.ErrorIs(t, err, ErrHelp, arg)
	}

	// Help wins over an invalid value, because values are checked after the flags are read.
	_, err := parse([]string{"--listen", "bad", "--help"}, nil, testHost)
	require.ErrorIs(t, err, ErrHelp)
}

func TestParseUsesRealHostName(t *testing.T) {
	host := hostname()
	if checkNodeID(host) != nil {
		t.Skipf("host name %q is not a valid node id", host)
	}

	n, err := Parse(nil, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	assert.Equal(t, host, n.NodeID)
}

func TestUsageListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	Usage(&out)
	text := out.String()

	for _, opt := range options {
		assert.Contains(t, text, "\n  --"+opt.name, opt.name)
		assert.Contains(t, text, "env: "+opt.env()+"\n", opt.name)
	}

	assert.Contains(t, text, "--listen HOST:PORT\n")
	assert.Contains(t, text, "--peer-exchange\n")
	assert.Contains(t, text, "default: :8080;")
	assert.Contains(t, text, "default: 10s;")
	assert.Contains(t, text, "default: 65536;")
	assert.Contains(t, text, "default: true;")
	assert.Contains(t, text, "default: info;")
	assert.Contains(t, text, "default: the host name;")
	assert.Contains(t, text, "default: same origin only;")
	assert.Contains(t, text, "default: 127.0.0.1:6379;")
}

func TestUsageHidesSecrets(t *testing.T) {
	var out bytes.Buffer
	Usage(&out)

	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "WSCLUSTER_CLUSTER_SECRET") || strings.Contains(line, "WSCLUSTER_REDIS_PASSWORD") {
			assert.Contains(t, line, "default: empty;")
		}
	}
}

func TestValueErrorUnwrap(t *testing.T) {
	_, err := parse([]string{"--node-id", "bad id"}, nil, testHost)
	require.Error(t, err)
	assert.ErrorIs(t, err, errNodeID)
	assert.False(t, errors.Is(err, ErrHelp))
}
