// Command wscluster-netfault injects network faults into the network
// namespace it runs in. The suite runs it as a sidecar container that shares
// a node's namespace:
//
//	docker run -d --network container:NODE --cap-add NET_ADMIN --user 0 \
//	  --entrypoint /wscluster-netfault wscluster/node:dev serve
//	docker exec SIDECAR /wscluster-netfault partition --drop 172.18.0.3
//
// serve also listens on a unix socket in the sidecar's own file system, on
// which degrade, heal and status reach it. Where the kernel lacks netem,
// serve delays packets that the degrade rules send to its NFQUEUE.
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
  serve                  keep a sidecar container alive until SIGTERM or SIGINT, and delay packets for degrade through NFQUEUE
  partition --drop LIST  drop all packets from and to these IP addresses (empty LIST removes the partition)
  degrade [flags]        delay egress packets (netem, or NFQUEUE through serve) and drop a fraction of ingress packets
  reset --peers LIST     make every open TCP connection with these IP addresses fail at once
  heal                   remove every rule, qdisc and NFQUEUE delay this command installed
  status                 print {"nft_rules": N, "qdiscs": [...], "nfqueue": {...}} as JSON

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
		err = degrade(args[1:], stdout, stderr, logger)
	case "reset":
		err = reset(args[1:], stdout, stderr, logger)
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
	control := controlFlag(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	server := listenControl(*control, logger)
	logger.Info("netfault sidecar started", "pid", os.Getpid(), "control", *control)
	<-ctx.Done()
	if server != nil {
		if err := server.Close(); err != nil {
			logger.Error("closing the control socket failed", "control", *control, "error", err)
		}
	}
	logger.Info("netfault sidecar stopped", "cause", context.Cause(ctx))
	return nil
}

// listenControl starts the control socket at path, or returns nil when
// path is empty or the socket cannot be created. Without it, every fault
// but the NFQUEUE delay still works, so serve keeps the sidecar alive and
// only logs the error.
func listenControl(path string, logger *slog.Logger) *netfault.ControlServer {
	if path == "" {
		return nil
	}
	server, err := netfault.ListenControl(path, logger)
	if err != nil {
		logger.Error("control socket unavailable; degrade cannot fall back to NFQUEUE", "control", path, "error", err)
		return nil
	}
	go func() {
		if err := server.Serve(); err != nil {
			logger.Error("control socket failed", "control", path, "error", err)
		}
	}()
	return server
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

func degrade(args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("degrade", flag.ContinueOnError)
	var d netfault.Degradation
	fs.DurationVar(&d.Delay, "delay", 0, "delay added to each egress packet, such as 100ms; 0 removes the delay")
	fs.DurationVar(&d.Jitter, "jitter", 0, "uniform variation of --delay, such as 20ms; needs --delay")
	fs.StringVar(&d.DelayMechanism, "delay-mechanism", "", "`mechanism` of the delay: netem, nfqueue (needs serve), or empty for netem with a fallback to nfqueue")
	fs.Float64Var(&d.Loss, "loss", 0, "`fraction` of ingress packets dropped, from 0 to 1 in steps of 0.001")
	fs.StringVar(&d.Device, "dev", netfault.DefaultDevice, "network `interface` to degrade")
	peers := fs.String("peers", "", "comma-separated IP `addresses` to degrade traffic with; empty degrades all traffic on --dev")
	control := controlFlag(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var err error
	if d.Peers, err = netfault.ParseAddrs(*peers); err != nil {
		return err
	}
	mechanism, err := netfault.Degrade(d, *control)
	if err != nil {
		return err
	}
	logger.Info("degradation applied", "dev", d.Device, "delay", d.Delay, "jitter", d.Jitter, "delay_mechanism", mechanism, "loss", d.Loss, "peers", d.Peers)
	return json.NewEncoder(stdout).Encode(map[string]string{"delay_mechanism": mechanism})
}

func reset(args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("reset", flag.ContinueOnError)
	peers := fs.String("peers", "", "comma-separated IP `addresses` whose TCP connections fail (required)")
	var opts netfault.ResetOptions
	fs.StringVar(&opts.Mechanism, "mechanism", "", "`mechanism`: sock-destroy, nftables-reset, or empty for sock-destroy with a fallback to nftables-reset")
	fs.DurationVar(&opts.Hold, "hold", netfault.DefaultResetHold, "how long nftables-reset rejects the peers' TCP packets with a reset")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	addrs, err := netfault.ParseAddrs(*peers)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: reset needs --peers LIST with at least one address", errUsage)
	}
	result, err := netfault.ResetConnections(addrs, opts)
	if err != nil {
		return err
	}
	logger.Info("connections reset", "peers", addrs, "mechanism", result.Mechanism, "connections", result.Connections)
	return json.NewEncoder(stdout).Encode(result)
}

func heal(args []string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("heal", flag.ContinueOnError)
	control := controlFlag(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := netfault.Heal(*control); err != nil {
		return err
	}
	logger.Info("faults healed", "table", "inet "+netfault.TableName)
	return nil
}

func status(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	control := controlFlag(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	s, err := netfault.ReadStatus(*control)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(s)
}

// controlFlag adds --control, the unix socket of the serve process.
func controlFlag(fs *flag.FlagSet) *string {
	return fs.String("control", netfault.DefaultControlSocket, "unix socket `path` of the serve process in this container; empty means no serve process")
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
