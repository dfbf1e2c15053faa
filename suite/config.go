// Package suite runs one Jepsen-style test of a wscluster deployment. It
// starts a topology and drives a workload while the nemesis injects faults.
// Then it heals everything, waits for recovery and makes final reads.
// Last, it checks the history and writes the run folder with its HTML
// report.
package suite

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/wscluster/wscluster/workloads"
)

// ErrConfig is returned, wrapped, for a Config that cannot run. The message
// names the field, the value and what is allowed.
var ErrConfig = errors.New("suite: invalid configuration")

// Config describes one run. Zero fields take the documented defaults.
type Config struct {
	// Topology is "local" (node processes on 127.0.0.1) or "container".
	// Default "local".
	Topology string
	// Engine is "mesh", "redis" or "none". Default "mesh".
	Engine string
	// Nodes is the number of nodes. Default 3.
	Nodes int
	// Workload is "pubsub", "presence" or "mixed". Default "mixed".
	Workload string
	// Nemesis is a comma-separated list of fault types, or "none".
	// Default "none".
	Nemesis string
	// Duration is the length of the main phase. Default 60s.
	Duration time.Duration
	// Recovery is the quiet wait after the final heal. Default the largest
	// of 10s, 3 x PeerTimeout and 2 x PingInterval + 2s, so that the nodes
	// have closed every silent client before the final reads.
	Recovery time.Duration
	// Seed drives every random choice of the workload and the nemesis.
	Seed int64
	// ResultsDir holds the run folders. Default "results".
	ResultsDir string
	// Binary is the wscluster binary the local topology starts. Default
	// "bin/wscluster".
	Binary string
	// Image is the node image of the container topology. Default
	// "wscluster/node:dev".
	Image string
	// HeartbeatInterval, PeerTimeout and PingInterval are passed to the
	// nodes. Defaults 1s and 3s, the node's own defaults, and 2s instead of
	// the node's 10s, so that silent clients are caught within a short
	// scenario.
	HeartbeatInterval time.Duration
	PeerTimeout       time.Duration
	PingInterval      time.Duration
	// Ordering is the nodes' --ordering: "" or "total" (redis only).
	Ordering string
	// NemesisInterval is the quiet gap between faults, and FaultDuration
	// how long each lasts. Defaults 5s and 6s.
	NemesisInterval time.Duration
	FaultDuration   time.Duration
	// ConcurrentFaults is the most faults of different kinds active at
	// once, so that faults combine. Default 2.
	ConcurrentFaults int
	// Rate is each publisher's publishes per second. Default 40.
	Rate float64
	// PublishWindow is how many publishes of one publisher may wait for
	// their results at once; above 1, publishers pipeline. Default 1.
	PublishWindow int
	// Command is the command line, recorded in the report so a person can
	// rerun it.
	Command string
	// Progress receives the progress lines. Default io.Discard.
	Progress io.Writer
	// Logger receives what the run cannot log in its own folder, such as a
	// failed teardown. Client churn, fault steps and process starts go to
	// logs/suite.log in the run folder. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	c.Topology = cmp(c.Topology, "local")
	c.Engine = cmp(c.Engine, "mesh")
	c.Workload = cmp(c.Workload, "mixed")
	c.Nemesis = cmp(c.Nemesis, "none")
	c.ResultsDir = cmp(c.ResultsDir, "results")
	c.Binary = cmp(c.Binary, "bin/wscluster")
	c.Image = cmp(c.Image, "wscluster/node:dev")
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.PeerTimeout == 0 {
		c.PeerTimeout = 3 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 2 * time.Second
	}
	if c.Recovery == 0 {
		c.Recovery = max(10*time.Second, 3*c.PeerTimeout, 2*c.PingInterval+2*time.Second)
	}
	if c.NemesisInterval == 0 {
		c.NemesisInterval = 5 * time.Second
	}
	if c.FaultDuration == 0 {
		c.FaultDuration = 6 * time.Second
	}
	if c.ConcurrentFaults == 0 {
		c.ConcurrentFaults = 2
	}
	if c.Rate == 0 {
		c.Rate = 40
	}
	if c.PublishWindow == 0 {
		c.PublishWindow = 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Validate checks a Config that has its defaults applied.
func (c Config) Validate() error {
	checks := []struct {
		ok   bool
		name string
		val  any
		want string
	}{
		{slices.Contains([]string{"local", "container"}, c.Topology), "topology", c.Topology, "local or container"},
		{slices.Contains([]string{"mesh", "redis", "none"}, c.Engine), "engine", c.Engine, "mesh, redis or none"},
		{slices.Contains([]string{"pubsub", "presence", "mixed"}, c.Workload), "workload", c.Workload, "pubsub, presence or mixed"},
		{c.Nodes >= 1 && c.Nodes <= 9, "nodes", c.Nodes, "1 to 9"},
		{c.Engine != "none" || c.Nodes == 1, "nodes", c.Nodes, "1 with --engine none, which cannot join nodes"},
		{c.Duration >= time.Second, "duration", c.Duration, "at least 1s"},
		{c.Recovery >= 2*c.PeerTimeout, "recovery", c.Recovery, "at least 2 x --peer-timeout, the convergence bound"},
		{c.PeerTimeout > c.HeartbeatInterval, "peer-timeout", c.PeerTimeout, "longer than --heartbeat-interval"},
		{c.Ordering == "" || c.Ordering == "total", "ordering", c.Ordering, `"" or total`},
		{c.Ordering == "" || c.Engine == "redis", "ordering", c.Ordering, "total only with --engine redis"},
		{c.Rate > 0 && c.Rate <= 10000, "rate", c.Rate, "between 0 and 10000 publishes per second"},
		{c.PublishWindow >= 1 && c.PublishWindow <= workloads.MaxPublishWindow, "publish-window", c.PublishWindow, fmt.Sprintf("1 to %d", workloads.MaxPublishWindow)},
		{c.FaultDuration >= time.Second, "fault-duration", c.FaultDuration, "at least 1s"},
		{c.Topology == "container" || !hasFault(c.Nemesis, "loss"), "nemesis", c.Nemesis, "loss only with --topology container, because the local proxies cannot drop packets"},
		{c.ConcurrentFaults >= 1 && c.ConcurrentFaults <= 4, "concurrent-faults", c.ConcurrentFaults, "1 to 4"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%w: --%s %v: want %s", ErrConfig, ch.name, ch.val, ch.want)
		}
	}
	return nil
}

func hasFault(list, name string) bool {
	for _, f := range strings.Split(list, ",") {
		if strings.TrimSpace(f) == name {
			return true
		}
	}
	return false
}
