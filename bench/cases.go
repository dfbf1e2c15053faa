package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wscluster/wscluster/bench/histogram"
	"github.com/wscluster/wscluster/bench/loadgen"
)

// readyTimeout bounds the wait for a generator's connections.
const readyTimeout = 3 * time.Minute

// benchCase is one workload on one system.
type benchCase struct {
	workload string
	system   string
	payload  int
	repeat   int
}

// label names the case's workload and payload, such as fanout-64.
func (c benchCase) label() string {
	if c.workload == WorkloadFanout {
		return c.workload + "-" + strconv.Itoa(c.payload)
	}
	return c.workload
}

// workloadSystems lists the systems each workload runs on. The fanout
// workload compares every engine; the latency workload only clusters,
// whose messages cross nodes, and single nodes for reference; the idle
// workload single nodes.
var workloadSystems = map[string][]string{
	WorkloadFanout:  {SystemOursNone, SystemOursMesh3, SystemOursRedis2, SystemPeerSingle, SystemPeerRedis2},
	WorkloadSteady:  {SystemOursNone, SystemOursMesh3, SystemOursRedis2, SystemPeerSingle, SystemPeerRedis2},
	WorkloadLatency: {SystemOursNone, SystemOursMesh2, SystemOursRedis2, SystemPeerSingle, SystemPeerRedis2},
	WorkloadIdle:    {SystemOursNone, SystemPeerSingle},
}

// plan returns the cases in run order: repeats outermost, so that every
// system of a comparison is measured close in time to the others.
func plan(cfg *Config) []benchCase {
	var cases []benchCase
	for r := 1; r <= cfg.Repeat; r++ {
		for _, w := range cfg.Workloads {
			payloads := []int{64}
			if w == WorkloadFanout {
				payloads = cfg.Payloads
			}
			for _, payload := range payloads {
				for _, s := range workloadSystems[w] {
					if slices.Contains(cfg.Systems, s) {
						cases = append(cases, benchCase{workload: w, system: s, payload: payload, repeat: r})
					}
				}
			}
		}
	}
	return cases
}

// runCase starts the case's system, measures it and stops it.
func runCase(ctx context.Context, env *environment, cfg *Config, c benchCase) (CaseResult, error) {
	cl, err := startCluster(ctx, env, systems[c.system])
	if err != nil {
		return CaseResult{}, err
	}
	defer cl.stop()
	result := CaseResult{Workload: c.label(), System: c.system, Repeat: c.repeat, Nodes: len(cl.nodes), PayloadBytes: c.payload}
	if c.workload == WorkloadIdle {
		err = measureIdle(ctx, env, cfg, cl, &result)
	} else {
		err = measureFanout(ctx, env, cfg, cl, c, &result)
	}
	if err == nil {
		err = cl.checkAlive()
	}
	return result, err
}

// generatorArgs returns the arguments of generator process i of n.
func generatorArgs(cfg *Config, cl *cluster, c benchCase, i, n int) []string {
	protocol := loadgen.ProtocolWSCluster
	if cl.sys.peer {
		protocol = loadgen.ProtocolCentrifuge
	}
	urls := cl.wsURLs()
	args := []string{"--protocol", protocol, "--mode", loadgen.ModeFanout,
		"--channel-prefix", fmt.Sprintf("%s-r%d-g%d-", c.label(), c.repeat, i),
		"--warmup", cfg.Warmup.String(), "--duration", cfg.Duration.String()}
	switch c.workload {
	case WorkloadFanout:
		// Subscribers spread over every node; the publisher is on the first.
		args = append(args, "--pub-url", urls[0], "--sub-url", strings.Join(urls, ","),
			"--subs", strconv.Itoa(cfg.Subscribers), "--window", strconv.Itoa(cfg.Window),
			"--payload", strconv.Itoa(c.payload))
	case WorkloadSteady:
		args = append(args, "--pub-url", urls[0], "--sub-url", strings.Join(urls, ","),
			"--subs", strconv.Itoa(cfg.Subscribers), "--rate", strconv.FormatFloat(cfg.SteadyRate, 'f', -1, 64),
			"--payload", strconv.Itoa(c.payload))
	case WorkloadLatency:
		// The publisher is on the first node and every subscriber on the
		// last, so in a cluster each message crosses nodes.
		args = append(args, "--pub-url", urls[0], "--sub-url", urls[len(urls)-1],
			"--subs", strconv.Itoa(share(cfg.LatencySubscribers, i, n)),
			"--rate", strconv.FormatFloat(cfg.LatencyRate/float64(n), 'f', -1, 64),
			"--payload", strconv.Itoa(c.payload))
	case WorkloadIdle:
		args = append(args, "--mode", loadgen.ModeIdle, "--sub-url", strings.Join(urls, ","),
			"--channels", "100", "--idle-conns", strconv.Itoa(share(cfg.IdleConns, i, n)))
	}
	return args
}

// share returns generator i's part of total split over n generators.
func share(total, i, n int) int {
	part := total / n
	if i < total%n {
		part++
	}
	return part
}

// generator is one running load generator process.
type generator struct {
	proc   *process
	stdin  *os.File
	events chan loadgen.Event
}

func startGenerator(env *environment, name string, args []string) (*generator, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return nil, err
	}
	p, err := startProcess(name, env.loadgenCPUs, append([]string{env.bins.loadgen}, args...), inR, outW)
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		_ = outR.Close()
		return nil, err
	}
	g := &generator{proc: p, stdin: inW, events: make(chan loadgen.Event, 16)}
	go g.readEvents(outR)
	return g, nil
}

// readEvents decodes the generator's output lines until it exits.
func (g *generator) readEvents(r *os.File) {
	defer close(g.events)
	defer r.Close()
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), 64<<20)
	for scanner.Scan() {
		var ev loadgen.Event
		if json.Unmarshal(scanner.Bytes(), &ev) == nil {
			g.events <- ev
		}
	}
}

// await waits for the event named want from every generator.
func awaitEvent(ctx context.Context, gens []*generator, want string, timeout time.Duration) ([]loadgen.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	out := make([]loadgen.Event, len(gens))
	for i, g := range gens {
		for {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-deadline.C:
				return nil, fmt.Errorf("%s sent no %q within %v; its last output:\n%s", g.proc.name, want, timeout, g.proc.output.String())
			case ev, ok := <-g.events:
				if !ok {
					<-g.proc.exited
					return nil, g.proc.failure()
				}
				if ev.Event != want {
					continue
				}
				out[i] = ev
			}
			break
		}
	}
	return out, nil
}

func sendControl(gens []*generator, line string) error {
	for _, g := range gens {
		if _, err := g.stdin.WriteString(line + "\n"); err != nil {
			return fmt.Errorf("write %q to %s: %w", line, g.proc.name, err)
		}
	}
	return nil
}

func stopGenerators(gens []*generator) {
	for _, g := range gens {
		_ = g.stdin.Close()
		select {
		case <-g.proc.exited:
		case <-time.After(30 * time.Second):
			g.proc.stop(5 * time.Second)
		}
	}
}

func startGenerators(env *environment, cfg *Config, cl *cluster, c benchCase) ([]*generator, error) {
	n := cfg.LoadgenProcs
	if c.workload == WorkloadFanout || c.workload == WorkloadSteady {
		// The channel's subscribers are counted in one process: the
		// closed loop needs every receipt of a publish in one place.
		n = 1
	}
	var gens []*generator
	for i := range n {
		g, err := startGenerator(env, fmt.Sprintf("load generator %d", i+1), generatorArgs(cfg, cl, c, i, n))
		if err != nil {
			stopGenerators(gens)
			return nil, err
		}
		gens = append(gens, g)
	}
	return gens, nil
}

// snapshot is a reading of the counters a window is measured by.
type snapshot struct {
	at        time.Time
	serverCPU float64
	redisCPU  float64
	backplane int64
	// serverCore and loadgenCore are the busy seconds of the two CPUs, by
	// any process.
	serverCore, loadgenCore float64
}

func takeSnapshot(ctx context.Context, env *environment, cl *cluster) (snapshot, error) {
	s := snapshot{at: time.Now()}
	busy, err := cpuBusySeconds()
	if err != nil {
		return s, err
	}
	s.serverCore, s.loadgenCore = busy[env.serverCPUs], busy[env.loadgenCPUs]
	for _, p := range cl.nodes {
		cpu, err := cpuSeconds(p.pid())
		if err != nil {
			return s, fmt.Errorf("read the CPU time of %s: %w", p.name, err)
		}
		s.serverCPU += cpu
	}
	if cl.redis != nil {
		cpu, err := cpuSeconds(cl.redis.pid())
		if err != nil {
			return s, fmt.Errorf("read the CPU time of Redis: %w", err)
		}
		s.redisCPU = cpu
	}
	s.backplane, err = cl.backplaneCount(ctx)
	return s, err
}

// measureFanout runs the fanout or latency workload on cl.
func measureFanout(ctx context.Context, env *environment, cfg *Config, cl *cluster, c benchCase, res *CaseResult) error {
	gens, err := startGenerators(env, cfg, cl, c)
	if err != nil {
		return err
	}
	defer stopGenerators(gens)
	if _, err := awaitEvent(ctx, gens, "ready", readyTimeout); err != nil {
		return err
	}
	if err := sendControl(gens, loadgen.ControlStart); err != nil {
		return err
	}

	window := cfg.Warmup + cfg.Duration + time.Minute
	if _, err := awaitEvent(ctx, gens, "measure-begin", window); err != nil {
		return err
	}
	begin, err := takeSnapshot(ctx, env, cl)
	if err != nil {
		return err
	}
	if _, err := awaitEvent(ctx, gens, "measure-end", window); err != nil {
		return err
	}
	end, err := takeSnapshot(ctx, env, cl)
	if err != nil {
		return err
	}
	results, err := awaitEvent(ctx, gens, "result", time.Minute)
	if err != nil {
		return err
	}
	res.fill(begin, end, results)
	return nil
}

// fill computes a fanout or latency case's figures from the window's
// snapshots and the generators' results.
func (res *CaseResult) fill(begin, end snapshot, events []loadgen.Event) {
	latency := histogram.New()
	var windowSeconds float64
	for _, ev := range events {
		r := ev.Result
		res.Conns += r.Conns
		res.Publishes += r.Publishes
		res.PublishErrors += r.PublishErrors
		res.Expected += r.Expected
		res.Received += r.Received
		res.Lost += r.Lost
		res.Stalls += r.Stalls
		res.Disconnects += r.Disconnects
		res.WindowDelivered += r.WindowDelivered
		res.WindowPublishes += r.WindowPublishes
		res.LoadgenCPUSeconds += r.CPUSeconds
		windowSeconds = max(windowSeconds, r.WindowSeconds)
		latency.AddSparse(r.Latency)
	}
	res.WindowSeconds = windowSeconds
	res.ServerCPUSeconds = end.serverCPU - begin.serverCPU + end.redisCPU - begin.redisCPU
	res.RedisCPUSeconds = end.redisCPU - begin.redisCPU
	if windowSeconds > 0 {
		res.DeliveredPerSecond = float64(res.WindowDelivered) / windowSeconds
		res.ServerCPUUtilization = res.ServerCPUSeconds / end.at.Sub(begin.at).Seconds()
		res.LoadgenCPUUtilization = res.LoadgenCPUSeconds / windowSeconds
	}
	if res.ServerCPUSeconds > 0 {
		res.DeliveredPerCPUSecond = float64(res.WindowDelivered) / res.ServerCPUSeconds
	}
	if wall := end.at.Sub(begin.at).Seconds(); wall > 0 {
		res.ServerCoreForeignLoad = max(0, (end.serverCore-begin.serverCore-res.ServerCPUSeconds)/wall)
		res.LoadgenCoreForeignLoad = max(0, (end.loadgenCore-begin.loadgenCore-res.LoadgenCPUSeconds)/wall)
	}
	if res.WindowPublishes > 0 && end.backplane > 0 {
		res.BackplanePerPublish = float64(end.backplane-begin.backplane) / float64(res.WindowPublishes)
	}
	res.LatencyP50Ms = millis(latency.Quantile(0.50))
	res.LatencyP99Ms = millis(latency.Quantile(0.99))
	res.LatencyP999Ms = millis(latency.Quantile(0.999))
	res.LatencyMaxMs = millis(latency.Max())
	res.LatencySamples = latency.Count()
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// measureIdle opens the idle connections and reads the node's memory.
func measureIdle(ctx context.Context, env *environment, cfg *Config, cl *cluster, res *CaseResult) error {
	baseline, err := clusterRSS(cl)
	if err != nil {
		return err
	}
	gens, err := startGenerators(env, cfg, cl, benchCase{workload: WorkloadIdle, repeat: res.Repeat})
	if err != nil {
		return err
	}
	defer stopGenerators(gens)
	ready, err := awaitEvent(ctx, gens, "ready", readyTimeout)
	if err != nil {
		return err
	}
	for _, ev := range ready {
		res.Conns += ev.Conns
	}

	// The wait lets the Go runtime's background scavenger return the
	// memory of the handshakes' garbage, as it would on a server whose
	// connections arrived over minutes.
	begin, err := takeSnapshot(ctx, env, cl)
	if err != nil {
		return err
	}
	if err := sleepContext(ctx, cfg.IdleSettle); err != nil {
		return err
	}
	end, err := takeSnapshot(ctx, env, cl)
	if err != nil {
		return err
	}
	after, err := clusterRSS(cl)
	if err != nil {
		return err
	}
	res.RSSBaselineMiB = float64(baseline) / (1 << 20)
	res.RSSAfterMiB = float64(after) / (1 << 20)
	res.ServerCPUSeconds = end.serverCPU - begin.serverCPU
	if res.Conns > 0 {
		res.IdleKiBPerConn = float64(after-baseline) / 1024 / float64(res.Conns)
	}
	if err := sendControl(gens, loadgen.ControlStop); err != nil {
		return err
	}
	results, err := awaitEvent(ctx, gens, "result", time.Minute)
	if err != nil {
		return err
	}
	for _, ev := range results {
		res.Disconnects += ev.Result.Disconnects
	}
	return nil
}

// clusterRSS returns the resident memory of every node, Redis excluded.
func clusterRSS(cl *cluster) (int64, error) {
	var total int64
	for _, p := range cl.nodes {
		rss, err := rssBytes(p.pid())
		if err != nil {
			return 0, fmt.Errorf("read the memory of %s: %w", p.name, err)
		}
		total += rss
	}
	return total, nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
