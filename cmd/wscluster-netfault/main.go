// Command wscluster-netfault injects network faults into the network
// namespace it runs in. The suite runs it as a sidecar container that shares
// a node's namespace:
//
//	docker run -d --network container:NODE --cap-add NET_ADMIN --user 0 \
//	  --entrypoint /wscluster-netfault wscluster/node:dev serve
//	docker exec SIDECAR /wscluster-netfault partition --drop 172.18.0.3
//
// Exit status: 0 on success, 1 on failure, 2 on invalid usage, and 3 when
// the kernel or namespace cannot apply the fault. With status 3, stderr has
// one line that starts with "unsupported:" and names what is missing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wscluster/wscluster/netfault"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnsupported = 3
)

const usage = `usage: wscluster-netfault COMMAND [flags]

commands:
  serve                  block until SIGTERM or SIGINT, keeping a sidecar container alive
  partition --drop LIST  drop all packets from and to these IP addresses (empty LIST removes the partition)
  degrade [flags]        delay egress packets with netem and drop a fraction of ingress packets
  heal                   remove every rule and qdisc this command installed
  status                 print {"nft_rules": N, "qdiscs": [...]} as JSON

Run "wscluster-netfault COMMAND -h" for the flags of a command.
`

// errUsage marks a command line that does not parse.
var errUsage = errors.New("invalid usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr, logger)
	case "partition":
		err = partition(args[1:], stderr, logger)
	case "degrade":
		err = degrade(args[1:], stderr, logger)
	case "heal":
		err = heal(args[1:], stderr, logger)
	case "status":
		err = status(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "wscluster-netfault: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	return exitStatus(err, stderr)
}

// exitStatus prints err as one line and maps it to the exit status.
func exitStatus(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, netfault.ErrUnsupported):
		fmt.Fprintln(stderr, err)
		return exitUnsupported
	case errors.Is(err, errUsage), errors.Is(err, netfault.ErrInvalid):
		fmt.Fprintf(stderr, "wscluster-netfault: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "wscluster-netfault: %v\n", err)
		return exitFailure
	}
}

// parseFlags parses args into fs and rejects positional arguments.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s: %w", errUsage, fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s takes no arguments, got %q", errUsage, fs.Name(), fs.Args())
	}
	return nil
}

func serve(args []string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger.Info("netfault sidecar started", "pid", os.Getpid())
	<-ctx.Done()
	logger.Info("netfault sidecar stopped", "cause", context.Cause(ctx))
	return nil
}

func partition(args []string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("partition", flag.ContinueOnError)
	drop := fs.String("drop", "", "comma-separated IPv4 or IPv6 `addresses` whose packets are dropped in both directions; empty removes the partition (required)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}

	// An omitted --drop is more likely a mistake than a request to heal, so
	// only an explicit --drop "" removes the partition.
	if !flagSet(fs, "drop") {
		return fmt.Errorf("%w: partition needs --drop LIST; pass --drop '' to remove the partition", errUsage)
	}
	addrs, err := netfault.ParseAddrs(*drop)
	if err != nil {
		return err
	}
	if err := netfault.Partition(addrs); err != nil {
		return err
	}
	logger.Info("partition applied", "drop", addrs)
	return nil
}

func degrade(args []string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("degrade", flag.ContinueOnError)
	var d netfault.Degradation
	fs.DurationVar(&d.Delay, "delay", 0, "delay added to each egress packet by netem, such as 100ms; 0 removes the delay")
	fs.DurationVar(&d.Jitter, "jitter", 0, "uniform variation of --delay, such as 20ms; needs --delay")
	fs.Float64Var(&d.Loss, "loss", 0, "`fraction` of ingress packets dropped, from 0 to 1 in steps of 0.001")
	fs.StringVar(&d.Device, "dev", netfault.DefaultDevice, "network `interface` to degrade")
	peers := fs.String("peers", "", "comma-separated IP `addresses` to degrade traffic with; empty degrades all traffic on --dev")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var err error
	if d.Peers, err = netfault.ParseAddrs(*peers); err != nil {
		return err
	}
	if err := netfault.Degrade(d); err != nil {
		return err
	}
	logger.Info("degradation applied", "dev", d.Device, "delay", d.Delay, "jitter", d.Jitter, "loss", d.Loss, "peers", d.Peers)
	return nil
}

func heal(args []string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("heal", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := netfault.Heal(); err != nil {
		return err
	}
	logger.Info("faults healed", "table", "inet "+netfault.TableName)
	return nil
}

func status(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	s, err := netfault.ReadStatus()
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(s)
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
