package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/nemesis"
	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/workloads"
)

// ErrNotRun is returned, wrapped, when the run could not be carried out:
// a node never started, or the run folder could not be written. Such a run
// has no verdict.
var ErrNotRun = errors.New("suite: run could not be carried out")

// Outcome is the product of a finished run: its folder and verdicts.
type Outcome struct {
	// ID names the run folder under Config.ResultsDir.
	ID string
	// Dir is the run folder.
	Dir string
	// Results are the checkers' verdicts, also in Dir/results.json.
	Results checker.Results
}

// Run carries out one run. It returns ErrConfig or ErrNotRun, wrapped, when
// there is no verdict; otherwise the verdict is in the Outcome, also when
// it is invalid or unknown.
func Run(ctx context.Context, cfg Config) (Outcome, error) {
	cfg = cfg.WithDefaults()
	faults, err := preflight(cfg)
	if err != nil {
		return Outcome{}, err
	}
	r, err := newRun(cfg)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %w", ErrNotRun, err)
	}
	defer r.close()

	runErr := r.execute(ctx, faults)
	r.close()

	// The history is complete once the clients and the cluster are closed,
	// so the checkers, the meta and the report share one copy of it.
	r.ops = r.rec.Ops()
	if runErr != nil {
		_ = r.writeMeta(runErr)
		return r.outcome(), fmt.Errorf("%w: %w", ErrNotRun, runErr)
	}
	r.results = r.check()
	if err := r.write(); err != nil {
		return r.outcome(), fmt.Errorf("%w: %w", ErrNotRun, err)
	}
	return r.outcome(), nil
}

// Preflight checks cfg as Run would, without starting anything, so a
// command line can reject bad flags before it announces a run.
func Preflight(cfg Config) error {
	_, err := preflight(cfg.WithDefaults())
	return err
}

func preflight(cfg Config) ([]nemesis.Fault, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	faults, err := nemesis.Parse(cfg.Nemesis, cfg.Engine)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return faults, nil
}

// run is the state of one run.
type run struct {
	cfg     Config
	id, dir string
	started time.Time
	histf   *os.File
	logf    *os.File
	log     *slog.Logger
	rec     *history.Recorder
	ops     []history.Op
	topo    topology.Topology
	wl      workloads.Workload
	nem     *nemesis.Nemesis
	results checker.Results

	closeOnce sync.Once
}

func newRun(cfg Config) (*run, error) {
	started := time.Now()
	id := fmt.Sprintf("%s-%s-%s-s%d", started.UTC().Format("20060102T150405"), cfg.Engine, nemesisLabel(cfg.Nemesis), cfg.Seed)
	dir := filepath.Join(cfg.ResultsDir, id)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create run folder: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("create history: %w", err)
	}
	// Client churn and fault steps are logged to the run folder, where they
	// sit next to the node logs, so the terminal shows only progress.
	logf, err := os.Create(filepath.Join(dir, "logs", "suite.log"))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create suite log: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("run", id)
	r := &run{cfg: cfg, id: id, dir: dir, started: started, histf: f, logf: logf, log: log, rec: history.NewRecorder(f)}
	return r, nil
}

// execute runs the schedule: setup, main, heal, recovery, final.
func (r *run) execute(ctx context.Context, faults []nemesis.Fault) error {
	log := r.log
	fmt.Fprintf(r.cfg.Progress, "run %s seed %d\n", r.id, r.cfg.Seed)

	// Start the cluster. A node that never comes up ends the run with no
	// verdict.
	r.phase(history.PhaseSetup)
	if err := r.startTopology(ctx); err != nil {
		return err
	}
	probeCtx, stopProbes := context.WithCancel(context.Background())
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		newProber(r.topo.Nodes(), r.rec).run(probeCtx)
	}()
	defer func() {
		stopProbes()
		<-probesDone
	}()

	// Connect the clients and subscribe them before any fault.
	if err := r.startWorkload(ctx, log); err != nil {
		return err
	}
	r.nem = nemesis.New(nemesis.Config{
		Faults: faults, Interval: r.cfg.NemesisInterval, FaultDuration: r.cfg.FaultDuration,
		MaxConcurrent: r.cfg.ConcurrentFaults,
	}, r.topo, r.rec, rand.New(rand.NewPCG(uint64(r.cfg.Seed), 0x6e656d65736973)), log.With("component", "nemesis"))

	// Workload and nemesis together for the duration.
	if err := r.mainPhase(ctx); err != nil {
		return err
	}

	// End every fault, then let the cluster converge with no writes.
	r.phase(history.PhaseHeal)
	fmt.Fprintf(r.cfg.Progress, "[%6.1fs] healing every fault\n", r.elapsed())
	healCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	healErr := r.nem.HealAll(healCtx)
	cancel()
	if healErr != nil {
		return fmt.Errorf("final heal: %w", healErr)
	}
	r.phase(history.PhaseRecovery)
	fmt.Fprintf(r.cfg.Progress, "[%6.1fs] recovery wait %s\n", r.elapsed(), r.cfg.Recovery)
	if err := r.during(ctx, r.cfg.Recovery, r.wl.Observe); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}

	// Read every node's state with fresh connections.
	r.phase(history.PhaseFinal)
	finalCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := r.wl.Final(finalCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("final reads: %w", err)
	}
	r.phase(history.PhaseDone)
	return nil
}

func (r *run) startTopology(ctx context.Context) error {
	topo, err := newTopology(r.cfg, r.dir, r.log)
	if err != nil {
		return err
	}
	r.topo = topo
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := topo.Start(startCtx); err != nil {
		return fmt.Errorf("start %s topology: %w", r.cfg.Topology, err)
	}
	return waitReady(startCtx, topo.Nodes())
}

func (r *run) startWorkload(ctx context.Context, log *slog.Logger) error {
	wl, err := workloads.New(r.cfg.Workload, workloads.Config{
		Nodes: r.topo.Nodes(), Recorder: r.rec, Seed: r.cfg.Seed,
		Logger: log.With("component", "workload"), PublishRate: r.cfg.Rate,
		PublishWindow: r.cfg.PublishWindow, PingInterval: r.cfg.PingInterval,
	})
	if err != nil {
		return err
	}
	r.wl = wl
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := wl.Setup(setupCtx); err != nil {
		return fmt.Errorf("workload setup: %w", err)
	}
	return nil
}

// mainPhase runs the workload and the nemesis for the duration and prints
// progress. A nemesis error, such as a fault the topology cannot inject,
// ends the run without a verdict.
func (r *run) mainPhase(ctx context.Context) error {
	r.phase(history.PhaseMain)
	mainCtx, cancel := context.WithTimeout(ctx, r.cfg.Duration)
	defer cancel()

	var nemErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		nemErr = r.nem.Run(mainCtx)
		if nemErr != nil {
			cancel()
		}
	}()
	stopProgress := r.progress(mainCtx)
	err := r.wl.Run(mainCtx)
	<-done
	stopProgress()
	if nemErr != nil && !errors.Is(nemErr, context.Canceled) && !errors.Is(nemErr, context.DeadlineExceeded) {
		return fmt.Errorf("nemesis: %w", nemErr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("workload: %w", err)
	}
	return nil
}

// during runs f until d has passed.
func (r *run) during(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := f(c)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

func (r *run) phase(name string) {
	r.rec.Record(history.Op{Type: history.Phase, F: name, Process: history.ProcessNemesis})
}

func (r *run) elapsed() float64 {
	return time.Duration(r.rec.Now()).Seconds()
}

// close stops the clients and the cluster. It is safe to call twice.
func (r *run) close() {
	r.closeOnce.Do(func() {
		if r.wl != nil {
			_ = r.wl.Close()
		}
		if r.topo != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := r.topo.Close(ctx); err != nil {
				r.cfg.Logger.Warn("close topology", "run", r.id, "err", err)
			}
		}
		_ = r.rec.Flush()
		_ = r.histf.Close()
		_ = r.logf.Close()
	})
}

func (r *run) outcome() Outcome {
	return Outcome{ID: r.id, Dir: r.dir, Results: r.results}
}
