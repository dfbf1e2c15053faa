package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/suite"
)

func runFlags(fs *flag.FlagSet, cfg *suite.Config) *int64 {
	fs.StringVar(&cfg.Topology, "topology", "local", "where nodes run: local (processes on 127.0.0.1) or container")
	fs.StringVar(&cfg.Engine, "engine", "mesh", "backplane engine of the nodes: mesh, redis or none")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "number of nodes, 1 to 9")
	fs.StringVar(&cfg.Workload, "workload", "mixed", "traffic: pubsub, presence or mixed")
	fs.StringVar(&cfg.Nemesis, "nemesis", "none", "comma-separated faults: partition, partition-halves, partition-isolate, partition-ring, partition-bridge, partition-random, latency, loss (container only), reset, kill, pause, redis-kill, redis-pause, or none")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "length of the workload and nemesis phase")
	fs.DurationVar(&cfg.Recovery, "recovery", 0, "quiet wait after the final heal (default max(10s, 3 x --peer-timeout, 2 x --ping-interval + 2s))")
	seed := fs.Int64("seed", 0, "seed of every random choice; 0 picks one from the clock and prints it")
	fs.StringVar(&cfg.ResultsDir, "results", "results", "folder of the run folders")
	fs.StringVar(&cfg.Binary, "binary", "bin/wscluster", "wscluster binary for the local topology")
	fs.StringVar(&cfg.Image, "image", "wscluster/node:dev", "node image for the container topology")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", time.Second, "the nodes' --heartbeat-interval")
	fs.DurationVar(&cfg.PeerTimeout, "peer-timeout", 3*time.Second, "the nodes' --peer-timeout")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 2*time.Second, "the nodes' --ping-interval; short, so silent clients are caught within a short scenario")
	fs.StringVar(&cfg.Ordering, "ordering", "", "the nodes' --ordering: empty or total (redis only)")
	fs.DurationVar(&cfg.NemesisInterval, "nemesis-interval", 5*time.Second, "quiet gap between faults")
	fs.DurationVar(&cfg.FaultDuration, "fault-duration", 6*time.Second, "how long each fault lasts")
	fs.IntVar(&cfg.ConcurrentFaults, "concurrent-faults", 2, "most faults of different kinds active at once")
	fs.Float64Var(&cfg.Rate, "rate", 40, "publishes per second of each publisher")
	fs.IntVar(&cfg.PublishWindow, "publish-window", 1, "publishes of one publisher that may wait for their results at once; above 1, publishers pipeline")
	return seed
}

func runCommand(args []string) int {
	var cfg suite.Config
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	seed := runFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return exitNotRun
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "wscluster-suite run: unexpected argument %q; every option is a flag\n", fs.Arg(0))
		return exitNotRun
	}
	if err := checkExplicitZeros(fs); err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-suite run: %v\n", err)
		return exitNotRun
	}
	if err := suite.Preflight(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-suite run: %v\n", err)
		return exitNotRun
	}
	cfg.Seed = *seed
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano() % 1_000_000
	}
	cfg.Command = rerunCommand(args, cfg.Seed)
	cfg.Progress = os.Stdout
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Printf("seed %d (rerun: %s)\n", cfg.Seed, cfg.Command)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := suite.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-suite run: %v\n", err)
		if out.Dir != "" {
			fmt.Fprintf(os.Stderr, "node logs: %s\n", filepath.Join(out.Dir, "logs"))
		}
		return exitNotRun
	}
	return printVerdict(out.Dir, out.Results)
}

// positiveFlags must be above zero when given. The suite's Config reads
// zero as "use the default", so an explicit 0 would otherwise run silently
// with the default instead.
var positiveFlags = []string{
	"nodes", "duration", "recovery", "heartbeat-interval", "peer-timeout", "ping-interval",
	"nemesis-interval", "fault-duration", "concurrent-faults", "rate", "publish-window",
}

func checkExplicitZeros(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil || !slices.Contains(positiveFlags, f.Name) {
			return
		}
		switch v := f.Value.(flag.Getter).Get().(type) {
		case int:
			if v <= 0 {
				err = fmt.Errorf("--%s %d: want a value above 0", f.Name, v)
			}
		case float64:
			if v <= 0 {
				err = fmt.Errorf("--%s %v: want a value above 0", f.Name, v)
			}
		case time.Duration:
			if v <= 0 {
				err = fmt.Errorf("--%s %v: want a duration above 0, such as 30s", f.Name, v)
			}
		}
	})
	return err
}

// rerunCommand is the command line that repeats this run, with the seed
// made explicit.
func rerunCommand(args []string, seed int64) string {
	kept := []string{"wscluster-suite", "run"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-seed" || a == "--seed" {
			i++
			continue
		}
		if strings.HasPrefix(a, "-seed=") || strings.HasPrefix(a, "--seed=") {
			continue
		}
		kept = append(kept, a)
	}
	return strings.Join(append(kept, fmt.Sprintf("--seed %d", seed)), " ")
}

// printVerdict prints each checker's verdict and where the report is, and
// returns the exit status for the combined verdict.
func printVerdict(dir string, res checker.Results) int {
	fmt.Println()
	for _, r := range res.Checkers {
		fmt.Printf("  %-22s %-8s %s\n", r.Name, r.Valid, r.Summary)
	}
	fmt.Printf("\nverdict: %s\nreport:  %s\n", res.Valid, filepath.Join(dir, "report.html"))
	switch res.Valid {
	case checker.Valid:
		return exitValid
	case checker.Invalid:
		return exitInvalid
	default:
		return exitUnknown
	}
}
