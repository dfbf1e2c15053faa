// Package bench measures wscluster side by side with a peer server built on
// the centrifuge library, in the same run on the same machine. It reports
// delivered messages per second and per server CPU-second,
// publish-to-receipt latency within a node and across nodes, memory per idle
// connection and backplane messages per publish.
//
// Run builds the binaries, starts each system (wscluster with the engines
// none, mesh and redis, and the peer alone and over Redis) pinned to one
// CPU, drives it with load generator processes pinned to another, and
// writes a table and results/bench/<run-id>.json. docs/benchmarks.md
// records the method and the figures.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Workloads of the benchmark.
const (
	// WorkloadFanout publishes as fast as the subscribers receive (a
	// closed loop) to one channel with Config.Subscribers subscribers,
	// spread over every node, from a publisher on the first node.
	WorkloadFanout = "fanout"
	// WorkloadLatency publishes Config.LatencyRate messages per second
	// from the first node to Config.LatencySubscribers subscribers on the
	// last node, so that a cluster's messages cross nodes.
	WorkloadLatency = "latency"
	// WorkloadSteady publishes Config.SteadyRate messages per second to
	// one channel with Config.Subscribers subscribers spread over every
	// node. Every system then delivers the same messages, so the CPU per
	// message compares the systems' work, not how well a saturated system
	// batches.
	WorkloadSteady = "steady"
	// WorkloadIdle holds Config.IdleConns idle connections on one node and
	// reads its resident memory.
	WorkloadIdle = "idle"
)

// ErrInvalidConfig wraps every rejected Config.
var ErrInvalidConfig = errors.New("invalid bench config")

// Config selects what a run measures. Zero fields take the defaults named
// on each field; Smoke replaces the sizes with small ones.
type Config struct {
	// Root is the wscluster module root, where the binaries are built and
	// results/ is written. Default: the first folder at or above the
	// working directory whose go.mod is wscluster's.
	Root string
	// OutDir receives <run-id>.json and latest.json. Default
	// <Root>/results/bench.
	OutDir string
	// Workloads to run, from WorkloadFanout, WorkloadSteady,
	// WorkloadLatency and WorkloadIdle. Default all.
	Workloads []string
	// Systems to run, such as SystemOursNone. Default all.
	Systems []string
	// Payloads are the data sizes of the fanout workload in bytes.
	// Default 64 and 4096.
	Payloads []int
	// Warmup precedes each measurement window. Default 2s.
	Warmup time.Duration
	// Duration is each measurement window. Default 10s.
	Duration time.Duration
	// Repeat runs every case this many times, interleaved, and reports the
	// median and the spread. Default 1.
	Repeat int
	// Subscribers of the fanout channel. Default 1000.
	Subscribers int
	// Window is the fanout workload's publishes in flight. Default 32.
	Window int
	// SteadyRate is the steady workload's publishes per second. Default
	// 100, which is 100,000 deliveries per second to 1000 subscribers: a
	// load that two nodes and Redis on one CPU still carry.
	SteadyRate float64
	// LatencySubscribers and LatencyRate (publishes per second) shape the
	// latency workload. Defaults 100 and 2000.
	LatencySubscribers int
	LatencyRate        float64
	// IdleConns is the number of idle connections. Default 10000.
	IdleConns int
	// IdleSettle is the wait between opening the idle connections and
	// reading the memory. Default 5s.
	IdleSettle time.Duration
	// MaxForeignLoad is the share of the two CPUs that other processes may
	// use during a window, such as 0.2; a case measured under more is run
	// again, up to Attempts times, and the least perturbed run is kept.
	// The machine is shared, and other processes on the pinned CPUs
	// inflate latency and CPU figures. Default 0.25.
	MaxForeignLoad float64
	// Attempts bounds the runs of one perturbed case. Default 3.
	Attempts int
	// LoadgenProcs splits the latency and idle workloads' connections
	// over this many generator processes. Default 1.
	LoadgenProcs int
	// Smoke shrinks every size and time, to check in seconds that the
	// benchmark still runs end to end.
	Smoke bool
	// Out receives the table. Default os.Stdout.
	Out io.Writer
	// Logger receives progress. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Smoke {
		c.applySmoke()
	}
	setDefault(&c.Warmup, 2*time.Second)
	setDefault(&c.Duration, 10*time.Second)
	setDefault(&c.Repeat, 1)
	setDefault(&c.Subscribers, 1000)
	setDefault(&c.Window, 32)
	setDefault(&c.SteadyRate, 100)
	setDefault(&c.LatencySubscribers, 100)
	setDefault(&c.LatencyRate, 2000)
	setDefault(&c.IdleConns, 10000)
	setDefault(&c.IdleSettle, 5*time.Second)
	setDefault(&c.LoadgenProcs, 1)
	setDefault(&c.MaxForeignLoad, 0.25)
	setDefault(&c.Attempts, 3)
	if len(c.Payloads) == 0 {
		c.Payloads = []int{64, 4096}
	}
	if len(c.Workloads) == 0 {
		c.Workloads = []string{WorkloadFanout, WorkloadSteady, WorkloadLatency, WorkloadIdle}
	}
	if len(c.Systems) == 0 {
		c.Systems = []string{SystemOursNone, SystemOursMesh2, SystemOursMesh3, SystemOursRedis2, SystemPeerSingle, SystemPeerRedis2}
	}
	return c.validate()
}

// applySmoke sets the small sizes of a smoke run where the caller left the
// defaults.
func (c *Config) applySmoke() {
	setDefault(&c.Warmup, 200*time.Millisecond)
	setDefault(&c.Duration, 500*time.Millisecond)
	setDefault(&c.Subscribers, 50)
	setDefault(&c.LatencySubscribers, 10)
	setDefault(&c.LatencyRate, 200)
	setDefault(&c.SteadyRate, 50)
	setDefault(&c.IdleConns, 200)
	setDefault(&c.IdleSettle, 200*time.Millisecond)
	setDefault(&c.Attempts, 1)
	if len(c.Payloads) == 0 {
		c.Payloads = []int{64}
	}
	if len(c.Workloads) == 0 {
		// The steady workload runs the same code as the latency one.
		c.Workloads = []string{WorkloadFanout, WorkloadLatency, WorkloadIdle}
	}
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func (c *Config) validate() error {
	for _, w := range c.Workloads {
		if !slices.Contains([]string{WorkloadFanout, WorkloadSteady, WorkloadLatency, WorkloadIdle}, w) {
			return fmt.Errorf("%w: workload %q; want %s, %s, %s or %s", ErrInvalidConfig, w, WorkloadFanout, WorkloadSteady, WorkloadLatency, WorkloadIdle)
		}
	}
	for _, s := range c.Systems {
		if _, ok := systems[s]; !ok {
			return fmt.Errorf("%w: system %q; want one of %s", ErrInvalidConfig, s, strings.Join(systemNames(), ", "))
		}
	}
	for _, p := range c.Payloads {
		if p < 64 {
			return fmt.Errorf("%w: payload of %d bytes; want at least 64 to hold the timestamp", ErrInvalidConfig, p)
		}
	}
	return nil
}

func systemNames() []string {
	var names []string
	for name := range systems {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Run runs the benchmark that cfg describes, prints the table to cfg.Out
// and writes the JSON report. It returns an error when a system or a
// generator failed; targets that are missed are reported, not returned.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	root, err := findRoot(cfg.Root)
	if err != nil {
		return err
	}
	if cfg.OutDir == "" {
		cfg.OutDir = filepath.Join(root, "results", "bench")
	}
	limit, err := raiseFileLimit()
	if err != nil {
		return err
	}
	if need := uint64(cfg.IdleConns + 1000); slices.Contains(cfg.Workloads, WorkloadIdle) && limit < need {
		return fmt.Errorf("%w: %d idle connections need an open files limit of about %d, but the hard limit is %d; raise it (ulimit -Hn) or lower the idle connections",
			ErrInvalidConfig, cfg.IdleConns, need, limit)
	}

	cases := plan(&cfg)
	if len(cases) == 0 {
		return fmt.Errorf("%w: no case to run, because no selected system runs a selected workload", ErrInvalidConfig)
	}
	binDir, err := os.MkdirTemp("", "wscluster-bench-")
	if err != nil {
		return fmt.Errorf("create a folder for the binaries: %w", err)
	}
	defer os.RemoveAll(binDir)
	withPeer := slices.ContainsFunc(cases, func(c benchCase) bool { return systems[c.system].peer })
	bins, err := build(ctx, root, binDir, withPeer, cfg.Logger)
	if err != nil {
		return err
	}
	env := &environment{bins: bins, log: cfg.Logger}
	if runtime.NumCPU() >= 2 {
		env.serverCPUs, env.loadgenCPUs = "0", "1"
	}

	rep := newReport(&cfg, env)
	for _, c := range cases {
		result, err := runLeastPerturbed(ctx, env, &cfg, c)
		if err != nil {
			return fmt.Errorf("%s on %s: %w", c.label(), c.system, err)
		}
		rep.Cases = append(rep.Cases, result)
	}
	rep.finish()
	rep.printTable(cfg.Out)
	return rep.write(cfg.OutDir)
}

// runLeastPerturbed runs c until other processes used at most
// cfg.MaxForeignLoad of the CPUs during its window, or cfg.Attempts times,
// and returns the least perturbed run.
func runLeastPerturbed(ctx context.Context, env *environment, cfg *Config, c benchCase) (CaseResult, error) {
	var best CaseResult
	for attempt := 1; attempt <= cfg.Attempts; attempt++ {
		cfg.Logger.Info("bench case", "workload", c.label(), "system", c.system, "repeat", c.repeat, "attempt", attempt)
		result, err := runCase(ctx, env, cfg, c)
		if err != nil {
			return CaseResult{}, err
		}
		result.Attempts = attempt
		if attempt == 1 || result.foreignLoad() < best.foreignLoad() {
			best = result
		}
		if result.foreignLoad() <= cfg.MaxForeignLoad {
			break
		}
		cfg.Logger.Info("other processes used the CPUs during the window; running the case again",
			"workload", c.label(), "system", c.system, "foreign_load", fmt.Sprintf("%.0f%%", 100*result.foreignLoad()))
	}
	return best, nil
}

// findRoot returns root, or else the first folder at or above the working
// directory with wscluster's go.mod.
func findRoot(root string) (string, error) {
	if root != "" {
		return filepath.Abs(root)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(mod), "module github.com/wscluster/wscluster\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no wscluster go.mod at or above the working directory; run from the repository or set the root", ErrInvalidConfig)
		}
		dir = parent
	}
}
