// Command wscluster-loadgen is the benchmark's load generator. It opens
// WebSocket connections to wscluster nodes or to the centrifuge-based peer
// server, publishes timestamped messages and measures delivery. The bench
// driver (wscluster-suite bench) starts it, writes control lines to its
// standard input and reads JSON lines from its standard output; see package
// bench/loadgen.
//
// Run by hand, it starts publishing as soon as its connections are ready
// and prints the result when the run ends:
//
//	wscluster-loadgen --protocol wscluster --pub-url ws://127.0.0.1:8080/ws \
//	    --sub-url ws://127.0.0.1:8080/ws --subs 100 --rate 1000 --duration 5s </dev/null
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wscluster/wscluster/bench/loadgen"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// urlList is a repeatable flag of ws:// URLs; a comma also separates them.
type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }

func (u *urlList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*u = append(*u, part)
		}
	}
	return nil
}

func parseFlags(args []string) (loadgen.Config, error) {
	var cfg loadgen.Config
	var pubURLs, subURLs urlList
	fs := flag.NewFlagSet("wscluster-loadgen", flag.ContinueOnError)
	fs.StringVar(&cfg.Protocol, "protocol", loadgen.ProtocolWSCluster, "server protocol: wscluster or centrifuge")
	fs.StringVar(&cfg.Mode, "mode", loadgen.ModeFanout, "fanout (publish and measure delivery) or idle (hold connections until the line stop on standard input)")
	fs.Var(&pubURLs, "pub-url", "ws:// URL publishers connect to; repeat or separate with commas to spread them")
	fs.Var(&subURLs, "sub-url", "ws:// URL subscribers and idle connections connect to; repeat or separate with commas to spread them")
	fs.StringVar(&cfg.ChannelPrefix, "channel-prefix", "bench-", "prefix of every channel name")
	fs.IntVar(&cfg.Channels, "channels", 1, "number of channels")
	fs.IntVar(&cfg.SubscribersPerChannel, "subs", 100, "subscriber connections per channel")
	fs.IntVar(&cfg.PublishersPerChannel, "pubs", 1, "publisher connections per channel")
	fs.Float64Var(&cfg.Rate, "rate", 0, "publishes per second over all publishers; 0 keeps --window publishes in flight per publisher")
	fs.IntVar(&cfg.Window, "window", 32, "closed loop: publishes in flight per publisher that not every subscriber has received")
	fs.IntVar(&cfg.PayloadBytes, "payload", 64, "size of each published data object in bytes, at least 64")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "publishing time before the measurement window")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measurement window")
	fs.DurationVar(&cfg.Drain, "drain", 0, "longest wait for messages in flight after publishing stops (default 5s)")
	fs.IntVar(&cfg.IdleConns, "idle-conns", 0, "idle mode: connections to open")
	fs.IntVar(&cfg.DialConcurrency, "dial-concurrency", 64, "connections being opened at once")
	fs.IntVar(&cfg.ReadBufferBytes, "read-buffer", 64<<10, "read buffer of each subscriber in bytes")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: every option is a flag", fs.Arg(0))
	}
	cfg.PublishURLs, cfg.SubscribeURLs = pubURLs, subURLs
	return cfg, nil
}

func run(args []string) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-loadgen: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if _, err := loadgen.Run(ctx, cfg, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-loadgen: %v\n", err)
		if errors.Is(err, loadgen.ErrInvalidConfig) {
			return 2
		}
		return 1
	}
	return 0
}
