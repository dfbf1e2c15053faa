package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Parse parses args, the arguments after `wscluster serve`, and the WSCLUSTER_*
// environment variables read through lookupEnv (os.LookupEnv in production, a
// map in tests; nil reads none). A flag wins over its variable, and a variable
// applies only when its flag was not given.
//
// Parse returns ErrHelp when -h, -help or --help was given. Any other error is
// one line for the user: a *ValueError for an invalid value, or an error about
// an unknown flag, a flag without its value or a positional argument.
func Parse(args []string, lookupEnv func(string) (string, bool)) (Node, error) {
	return parse(args, lookupEnv, hostname())
}

// source records where the value of a flag came from.
type source struct {
	// value is the text as given.
	value string
	// env is the variable the value came from, or "" for a flag.
	env string
}

// sources maps flag names to the sources of the values given; a flag that is
// missing has its default.
type sources map[string]source

// parse is Parse with the host name passed in, so tests can choose it.
func parse(args []string, lookupEnv func(string) (string, bool), host string) (Node, error) {
	flags, err := parseFlags(args)
	if err != nil {
		return Node{}, err
	}

	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}

	n := defaults(host)
	explicit := make(sources, len(options))

	// Apply each value given, by flag or else by variable, in table order so
	// the first invalid one reported is the same on every run.
	for _, opt := range options {
		src, ok := resolve(opt, flags, lookupEnv)
		if !ok {
			continue
		}

		if err := opt.set(&n, src.value); err != nil {
			return Node{}, newValueError(opt, src, err)
		}

		explicit[opt.name] = src
	}

	if err := applyDerivedDefaults(&n, explicit, host); err != nil {
		return Node{}, err
	}

	if err := checkCombinations(n, explicit); err != nil {
		return Node{}, err
	}

	return n, nil
}

// resolve returns the value of opt from the command line, or else from its
// variable, and false when neither gave one.
func resolve(opt option, flags map[string]string, lookupEnv func(string) (string, bool)) (source, bool) {
	if value, ok := flags[opt.name]; ok {
		return source{value: value}, true
	}

	if value, ok := lookupEnv(opt.env()); ok {
		return source{value: value, env: opt.env()}, true
	}

	return source{}, false
}

// flagValue records the raw text of one flag. Validation happens later in
// parse, because the flag package would word the error itself and name the
// flag with a single dash.
type flagValue struct {
	name    string
	boolean bool
	values  map[string]string
}

func (v *flagValue) String() string {
	if v == nil || v.values == nil {
		return ""
	}

	return v.values[v.name]
}

// Set records value. A flag given twice keeps the last value, as the flag package does.
func (v *flagValue) Set(value string) error {
	v.values[v.name] = value
	return nil
}

// IsBoolFlag lets the flag package accept a boolean flag without a value, as "true".
func (v *flagValue) IsBoolFlag() bool {
	return v.boolean
}

// parseFlags returns the raw value of every flag in args by flag name.
func parseFlags(args []string) (map[string]string, error) {
	fs := flag.NewFlagSet("wscluster serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	values := make(map[string]string)
	for _, opt := range options {
		fs.Var(&flagValue{name: opt.name, boolean: opt.arg == "", values: values}, opt.name, opt.usage)
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}

		return nil, fmt.Errorf("invalid command line: %w; run wscluster serve --help for the list of flags", err)
	}

	// The flag package stops at the first argument that is not a flag, which
	// is often the value of a boolean flag written with a space.
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: wscluster serve takes only flags, and a boolean flag takes its value after an equals sign, such as --peer-exchange=false", fs.Arg(0))
	}

	return values, nil
}

// newValueError builds the error for the value of opt from src.
func newValueError(opt option, src source, err error) *ValueError {
	e := &ValueError{Flag: opt.name, Env: src.env, Value: src.value, Err: err}
	if opt.secret {
		e.Value = ""
		e.Redacted = true
	}

	return e
}

// conflictError builds the error for a flag whose value conflicts with another
// flag, quoting the value as the user wrote it or else the default.
func (s sources) conflictError(name string, n Node, err error) *ValueError {
	opt := lookupOption(name)
	if src, ok := s[name]; ok {
		return newValueError(opt, src, err)
	}

	return &ValueError{Flag: name, Default: true, Value: opt.get(n), Err: err}
}

// applyDerivedDefaults checks the defaults that come from the host name, and
// derives --cluster-advertise from the final --cluster-listen port.
func applyDerivedDefaults(n *Node, explicit sources, host string) error {
	if !explicit.has("node-id") {
		if err := checkNodeID(n.NodeID); err != nil {
			return &ValueError{Flag: "node-id", Default: true, Value: n.NodeID,
				Err: fmt.Errorf("%w; the host name is not a valid node id, so pass --node-id or set %s", err, envName("node-id"))}
		}
	}

	if explicit.has("cluster-advertise") {
		return nil
	}

	n.ClusterAdvertise = advertiseDefault(host, n.ClusterListen)

	// Only the mesh uses the advertised address, so another engine starts even
	// when the host name or a port 0 makes the default unusable.
	if n.Engine != "mesh" {
		return nil
	}

	if err := checkDialAddr(n.ClusterAdvertise); err != nil {
		return &ValueError{Flag: "cluster-advertise", Default: true, Value: n.ClusterAdvertise,
			Err: fmt.Errorf("%w; the default is the host name and the port of --cluster-listen, so pass --cluster-advertise", err)}
	}

	return nil
}

// checkCombinations checks the rules that involve two flags. The error blames
// the flag the user set, preferring the first of the pair, because a default
// the user never wrote is a confusing culprit.
func checkCombinations(n Node, explicit sources) error {
	if n.PeerTimeout <= n.HeartbeatInterval {
		if explicit.has("peer-timeout") || !explicit.has("heartbeat-interval") {
			return explicit.conflictError("peer-timeout", n,
				fmt.Errorf("want a duration greater than --heartbeat-interval, which is %s", n.HeartbeatInterval))
		}

		return explicit.conflictError("heartbeat-interval", n,
			fmt.Errorf("want a duration less than --peer-timeout, which is %s", n.PeerTimeout))
	}

	set := 0
	for _, file := range []string{n.ClusterTLSCert, n.ClusterTLSKey, n.ClusterTLSCA} {
		if file != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		name := "cluster-tls-cert"
		if n.ClusterTLSCert != "" {
			name = "cluster-tls-key"
			if n.ClusterTLSKey != "" {
				name = "cluster-tls-ca"
			}
		}
		return explicit.conflictError(name, n,
			errors.New("want all three of --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca, or none"))
	}

	if len(n.RedisSentinelAddrs) > 0 && n.RedisSentinelMaster == "" {
		return explicit.conflictError("redis-sentinel-master", n,
			errors.New("want the name of the monitored primary, because --redis-sentinel-addrs is set"))
	}
	if (n.RedisTLSCert == "") != (n.RedisTLSKey == "") {
		name := "redis-tls-key"
		if n.RedisTLSCert == "" {
			name = "redis-tls-cert"
		}
		return explicit.conflictError(name, n,
			errors.New("want both --redis-tls-cert and --redis-tls-key, or neither"))
	}

	if n.TokenHMACSecret != "" && n.TokenPublicKey != "" {
		return explicit.conflictError("token-public-key", n,
			errors.New("want only one of --token-hmac-secret and --token-public-key, because a node verifies tokens with one key"))
	}

	if n.SendQueueBytes < 2*n.MaxMessageBytes {
		if explicit.has("send-queue-bytes") || !explicit.has("max-message-bytes") {
			return explicit.conflictError("send-queue-bytes", n,
				fmt.Errorf("want at least 2 x --max-message-bytes, which is 2 x %d = %d", n.MaxMessageBytes, 2*n.MaxMessageBytes))
		}

		return explicit.conflictError("max-message-bytes", n,
			fmt.Errorf("want at most half of --send-queue-bytes, which is %d / 2 = %d", n.SendQueueBytes, n.SendQueueBytes/2))
	}

	return nil
}

func (s sources) has(name string) bool {
	_, ok := s[name]
	return ok
}
