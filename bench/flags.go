package bench

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// RegisterFlags defines the command-line flags of a bench run on fs, bound
// to c's fields. A command calls it, parses, then passes c to Run.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var((*listFlag)(&c.Workloads), "workloads", "comma-separated workloads: fanout, steady, latency, idle (default all)")
	fs.Var((*listFlag)(&c.Systems), "systems", "comma-separated systems: ours-none, ours-mesh2, ours-mesh3, ours-redis2, peer-single, peer-redis2 (default all)")
	fs.Var((*intListFlag)(&c.Payloads), "payloads", "comma-separated data sizes of the fanout workload in bytes (default 64,4096)")
	fs.DurationVar(&c.Warmup, "warmup", 0, "publishing time before each measurement window (default 2s)")
	fs.DurationVar(&c.Duration, "duration", 0, "length of each measurement window (default 10s)")
	fs.IntVar(&c.Repeat, "repeat", 0, "runs of every case, interleaved, to show the spread (default 1)")
	fs.IntVar(&c.Subscribers, "subscribers", 0, "subscribers of the fanout channel (default 1000)")
	fs.IntVar(&c.Window, "window", 0, "fanout publishes in flight that not every subscriber has received (default 32)")
	fs.Float64Var(&c.SteadyRate, "steady-rate", 0, "publishes per second of the steady workload (default 100)")
	fs.IntVar(&c.LatencySubscribers, "latency-subscribers", 0, "subscribers of the latency workload (default 100)")
	fs.Float64Var(&c.LatencyRate, "latency-rate", 0, "publishes per second of the latency workload (default 2000)")
	fs.IntVar(&c.IdleConns, "idle-conns", 0, "connections of the idle workload (default 10000)")
	fs.DurationVar(&c.IdleSettle, "idle-settle", 0, "wait between opening the idle connections and reading the memory (default 5s)")
	fs.IntVar(&c.LoadgenProcs, "loadgen-procs", 0, "load generator processes of the latency and idle workloads (default 1)")
	fs.Float64Var(&c.MaxForeignLoad, "max-foreign-load", 0, "share of the two CPUs other processes may use during a window before the case runs again (default 0.25)")
	fs.IntVar(&c.Attempts, "attempts", 0, "most runs of one case measured under foreign load; the least perturbed is kept (default 3)")
	fs.BoolVar(&c.Smoke, "smoke", false, "small sizes and short windows, to check in seconds that the benchmark runs")
	fs.StringVar(&c.OutDir, "out", "", "folder of the JSON reports (default results/bench in the repository)")
}

// listFlag is a comma-separated list of names.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = nil
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// intListFlag is a comma-separated list of integers.
type intListFlag []int

func (l *intListFlag) String() string {
	parts := make([]string, len(*l))
	for i, v := range *l {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}

func (l *intListFlag) Set(v string) error {
	*l = nil
	for _, part := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("invalid number %q: want comma-separated integers such as 64,4096", part)
		}
		*l = append(*l, n)
	}
	return nil
}
