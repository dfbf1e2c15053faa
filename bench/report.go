package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// CaseResult holds the figures of one workload on one system. CPU figures
// cover the measurement window; ServerCPUSeconds includes Redis's CPU for
// the Redis systems.
type CaseResult struct {
	Workload string `json:"workload"`
	System   string `json:"system"`
	Repeat   int    `json:"repeat"`
	// Attempts is the number of runs of this case; see
	// Config.MaxForeignLoad.
	Attempts     int `json:"attempts"`
	Nodes        int `json:"nodes"`
	PayloadBytes int `json:"payload_bytes,omitempty"`
	Conns        int `json:"conns"`

	Publishes       int64   `json:"publishes,omitempty"`
	PublishErrors   int64   `json:"publish_errors,omitempty"`
	Expected        int64   `json:"expected,omitempty"`
	Received        int64   `json:"received,omitempty"`
	Lost            int64   `json:"lost"`
	Stalls          int64   `json:"stalls,omitempty"`
	Disconnects     int64   `json:"disconnects"`
	WindowSeconds   float64 `json:"window_seconds,omitempty"`
	WindowPublishes int64   `json:"window_publishes,omitempty"`
	WindowDelivered int64   `json:"window_delivered,omitempty"`

	DeliveredPerSecond    float64 `json:"delivered_per_second,omitempty"`
	DeliveredPerCPUSecond float64 `json:"delivered_per_server_cpu_second,omitempty"`
	ServerCPUSeconds      float64 `json:"server_cpu_seconds"`
	RedisCPUSeconds       float64 `json:"redis_cpu_seconds,omitempty"`
	ServerCPUUtilization  float64 `json:"server_cpu_utilization,omitempty"`
	LoadgenCPUSeconds     float64 `json:"loadgen_cpu_seconds,omitempty"`
	LoadgenCPUUtilization float64 `json:"loadgen_cpu_utilization,omitempty"`
	BackplanePerPublish   float64 `json:"backplane_messages_per_publish,omitempty"`
	// ServerCoreForeignLoad and LoadgenCoreForeignLoad are the shares of
	// the two CPUs that other processes used during the window. The
	// machine is shared, and a high value marks a perturbed case.
	ServerCoreForeignLoad  float64 `json:"server_core_foreign_load"`
	LoadgenCoreForeignLoad float64 `json:"loadgen_core_foreign_load"`

	LatencySamples int64   `json:"latency_samples,omitempty"`
	LatencyP50Ms   float64 `json:"latency_p50_ms,omitempty"`
	LatencyP99Ms   float64 `json:"latency_p99_ms,omitempty"`
	LatencyP999Ms  float64 `json:"latency_p999_ms,omitempty"`
	LatencyMaxMs   float64 `json:"latency_max_ms,omitempty"`

	RSSBaselineMiB float64 `json:"rss_baseline_mib,omitempty"`
	RSSAfterMiB    float64 `json:"rss_after_mib,omitempty"`
	IdleKiBPerConn float64 `json:"idle_kib_per_conn,omitempty"`
}

// foreignLoad is the share of the two CPUs other processes used during the
// window.
func (r CaseResult) foreignLoad() float64 {
	return r.ServerCoreForeignLoad + r.LoadgenCoreForeignLoad
}

// Comparison is one figure of ours beside the peer's (or beside another
// system of ours), measured in the same run.
type Comparison struct {
	Name   string `json:"name"`
	Ours   string `json:"ours"`
	Versus string `json:"versus"`
	// Ours and versus values are medians over the repeats.
	OursValue   float64 `json:"ours_value"`
	VersusValue float64 `json:"versus_value"`
	// Ratio is ours/versus of the medians; Ratios lists it per repeat.
	Ratio  float64   `json:"ratio"`
	Ratios []float64 `json:"ratios"`
	// Target is the goal, such as ">= 1.5" for the ratio; empty when the
	// figure is for information.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUModel    string `json:"cpu_model"`
	CPUs        int    `json:"cpus"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
	MemTotalMiB int64  `json:"mem_total_mib"`
	ServerCPUs  string `json:"server_cpus"`
	LoadgenCPUs string `json:"loadgen_cpus"`
}

// Report is the JSON document of a run.
type Report struct {
	RunID       string         `json:"run_id"`
	Started     time.Time      `json:"started"`
	Finished    time.Time      `json:"finished"`
	Machine     Machine        `json:"machine"`
	Settings    map[string]any `json:"settings"`
	Cases       []CaseResult   `json:"cases"`
	Comparisons []Comparison   `json:"comparisons"`
}

func newReport(cfg *Config, env *environment) *Report {
	now := time.Now().UTC()
	return &Report{
		RunID:   now.Format("20060102T150405Z"),
		Started: now,
		Machine: describeMachine(env),
		Settings: map[string]any{
			"workloads": cfg.Workloads, "systems": cfg.Systems, "payloads": cfg.Payloads,
			"warmup": cfg.Warmup.String(), "duration": cfg.Duration.String(), "repeat": cfg.Repeat,
			"subscribers": cfg.Subscribers, "window": cfg.Window, "steady_rate": cfg.SteadyRate,
			"latency_subscribers": cfg.LatencySubscribers, "latency_rate": cfg.LatencyRate,
			"idle_conns": cfg.IdleConns, "idle_settle": cfg.IdleSettle.String(),
			"loadgen_procs": cfg.LoadgenProcs, "smoke": cfg.Smoke,
			"max_foreign_load": cfg.MaxForeignLoad, "attempts": cfg.Attempts,
		},
	}
}

func describeMachine(env *environment) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), ServerCPUs: env.serverCPUs, LoadgenCPUs: env.loadgenCPUs}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPUModel = strings.TrimSpace(value)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(raw), "MemTotal: %d kB", &kib); err == nil {
			m.MemTotalMiB = kib >> 10
		}
	}
	return m
}

// comparisonSpec names a figure and the two systems it compares.
type comparisonSpec struct {
	name, workload, ours, versus string
	value                        func(CaseResult) float64
	target                       string
	// targetValue and atLeast check the ratio, or the absolute value of
	// ours when absolute is set.
	targetValue float64
	atLeast     bool
	absolute    bool
}

func deliveredPerCPU(r CaseResult) float64 { return r.DeliveredPerCPUSecond }
func deliveredPerSec(r CaseResult) float64 { return r.DeliveredPerSecond }
func p99(r CaseResult) float64             { return r.LatencyP99Ms }
func idleKiB(r CaseResult) float64         { return r.IdleKiBPerConn }

// cpuPerMessage is server CPU microseconds per delivered message.
func cpuPerMessage(r CaseResult) float64 {
	if r.DeliveredPerCPUSecond == 0 {
		return 0
	}
	return 1e6 / r.DeliveredPerCPUSecond
}

func comparisonSpecs(payloads []int) []comparisonSpec {
	var specs []comparisonSpec
	for _, p := range payloads {
		w := fmt.Sprintf("%s-%d", WorkloadFanout, p)
		specs = append(specs,
			comparisonSpec{name: w + " delivered per server CPU-second", workload: w, ours: SystemOursNone, versus: SystemPeerSingle,
				value: deliveredPerCPU, target: ">= 1.5", targetValue: 1.5, atLeast: true},
			comparisonSpec{name: w + " delivered per second", workload: w, ours: SystemOursNone, versus: SystemPeerSingle, value: deliveredPerSec},
			comparisonSpec{name: w + " delivered per server CPU-second, Redis", workload: w, ours: SystemOursRedis2, versus: SystemPeerRedis2, value: deliveredPerCPU},
			comparisonSpec{name: w + " CPU per delivered message, 3-node mesh vs one node", workload: w, ours: SystemOursMesh3, versus: SystemOursNone,
				value: cpuPerMessage, target: "<= 1.3", targetValue: 1.3},
		)
	}
	return append(specs,
		comparisonSpec{name: "steady delivered per server CPU-second", workload: WorkloadSteady, ours: SystemOursNone, versus: SystemPeerSingle, value: deliveredPerCPU},
		comparisonSpec{name: "steady delivered per server CPU-second, Redis", workload: WorkloadSteady, ours: SystemOursRedis2, versus: SystemPeerRedis2, value: deliveredPerCPU},
		comparisonSpec{name: "steady CPU per delivered message, 3-node mesh vs one node", workload: WorkloadSteady, ours: SystemOursMesh3, versus: SystemOursNone,
			value: cpuPerMessage, target: "<= 1.3", targetValue: 1.3},
		comparisonSpec{name: "cross-node p99 latency (ms), Redis", workload: WorkloadLatency, ours: SystemOursRedis2, versus: SystemPeerRedis2,
			value: p99, target: "<= 0.8", targetValue: 0.8},
		comparisonSpec{name: "cross-node p99 latency (ms), 2-node mesh vs peer over Redis", workload: WorkloadLatency, ours: SystemOursMesh2, versus: SystemPeerRedis2, value: p99},
		comparisonSpec{name: "p99 latency (ms), one node", workload: WorkloadLatency, ours: SystemOursNone, versus: SystemPeerSingle, value: p99},
		comparisonSpec{name: "idle memory per connection (KiB)", workload: WorkloadIdle, ours: SystemOursNone, versus: SystemPeerSingle,
			value: idleKiB, target: "ours <= 10 KiB", targetValue: 10, absolute: true},
	)
}

// finish computes the comparisons of every pair that ran.
func (r *Report) finish() {
	r.Finished = time.Now().UTC()
	payloads, _ := r.Settings["payloads"].([]int)
	for _, spec := range comparisonSpecs(payloads) {
		ours := r.values(spec.workload, spec.ours, spec.value)
		versus := r.values(spec.workload, spec.versus, spec.value)
		if len(ours) == 0 || len(versus) == 0 {
			continue
		}
		c := Comparison{Name: spec.name, Ours: spec.ours, Versus: spec.versus,
			OursValue: median(ours), VersusValue: median(versus), Target: spec.target}
		c.Ratio = safeRatio(c.OursValue, c.VersusValue)
		for i := range min(len(ours), len(versus)) {
			c.Ratios = append(c.Ratios, safeRatio(ours[i], versus[i]))
		}
		// A smoke run's sizes are too small to read a target from.
		if spec.target != "" && r.Settings["smoke"] != true {
			c.Met = spec.met(c)
		}
		r.Comparisons = append(r.Comparisons, c)
	}
}

func (s comparisonSpec) met(c Comparison) *bool {
	value := c.Ratio
	if s.absolute {
		value = c.OursValue
	}
	met := value <= s.targetValue
	if s.atLeast {
		met = value >= s.targetValue
	}
	return &met
}

// values returns a figure of every repeat of one workload on one system.
func (r *Report) values(workload, system string, value func(CaseResult) float64) []float64 {
	var out []float64
	for _, c := range r.Cases {
		if c.Workload == workload && c.System == system {
			out = append(out, value(c))
		}
	}
	return out
}

func safeRatio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func median(values []float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// write stores the report as <run-id>.json in dir and points latest.json
// at it.
func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the results folder %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(r.jsonSafe(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	name := r.RunID + ".json"
	if err := os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}

	// A relative symlink keeps working when the folder moves; latest.json
	// is replaced by a rename, so a reader never sees it missing.
	tmp := filepath.Join(dir, ".latest.json.tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return fmt.Errorf("link latest.json: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "latest.json")); err != nil {
		return fmt.Errorf("link latest.json: %w", err)
	}
	return nil
}

// jsonSafe returns a copy of r whose NaN ratios, which JSON cannot hold,
// are zero.
func (r *Report) jsonSafe() *Report {
	out := *r
	out.Comparisons = slices.Clone(r.Comparisons)
	for i := range out.Comparisons {
		c := &out.Comparisons[i]
		c.Ratio = finite(c.Ratio)
		c.Ratios = slices.Clone(c.Ratios)
		for j := range c.Ratios {
			c.Ratios[j] = finite(c.Ratios[j])
		}
	}
	return &out
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// printTable writes the cases and the comparisons as aligned columns.
func (r *Report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\tsystem\trep\tdelivered/s\tper srv CPU-s\tsrv CPU\tgen CPU\tforeign\tp50 ms\tp99 ms\tp999 ms\tlost\tbackplane/pub\tKiB/idle conn\t\n")
	for _, c := range r.Cases {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n",
			c.Workload, c.System, c.Repeat, count(c.DeliveredPerSecond), count(c.DeliveredPerCPUSecond),
			percent(c.ServerCPUUtilization), percent(c.LoadgenCPUUtilization), percent(c.ServerCoreForeignLoad+c.LoadgenCoreForeignLoad),
			decimal(c.LatencyP50Ms), decimal(c.LatencyP99Ms), decimal(c.LatencyP999Ms),
			c.Lost, decimal(c.BackplanePerPublish), decimal(c.IdleKiBPerConn))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if r.Settings["smoke"] == true {
		fmt.Fprintln(w, "smoke run: the sizes only check that the benchmark runs, so no target is read from them")
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "comparison\tours\tversus\tours/versus\tper repeat\ttarget\t\n")
	for _, c := range r.Comparisons {
		var ratios []string
		for _, v := range c.Ratios {
			ratios = append(ratios, fmt.Sprintf("%.2f", v))
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%.2f\t%s\t%s\t\n", c.Name, c.Ours, decimal(c.OursValue),
			c.Versus, decimal(c.VersusValue), c.Ratio, strings.Join(ratios, " "), verdict(c))
	}
	_ = tw.Flush()
}

func verdict(c Comparison) string {
	switch {
	case c.Met == nil:
		return ""
	case *c.Met:
		return c.Target + ": met"
	default:
		return c.Target + ": MISSED"
	}
}

func count(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func percent(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

func decimal(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
