package suite

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/report"
)

// check runs the checkers that apply to the workload on the history.
func (r *run) check() checker.Results {
	in := checker.Input{
		Run: checker.Run{
			Engine: r.cfg.Engine, Nodes: r.nodeIDs(), Ordering: r.cfg.Ordering,
			HeartbeatInterval: r.cfg.HeartbeatInterval, PeerTimeout: r.cfg.PeerTimeout,
			PingInterval: r.cfg.PingInterval, ReplayMaxAge: replayMaxAge,
		},
		History: r.ops,
		Dir:     r.dir,
	}
	return checker.CheckAll(in, Checkers(r.cfg.Workload, r.cfg.Ordering))
}

// replayMaxAge is the nodes' replay buffer age limit, which the node does
// not expose as a flag.
const replayMaxAge = 60 * time.Second

// Checkers returns the checkers for a workload. Checkers of traffic the
// workload does not make are left out, because with no data they would
// rightly return unknown.
func Checkers(workload, ordering string) []checker.Checker {
	pubsub := []checker.Checker{checker.Delivery(), checker.Order(), checker.Latency(), checker.Loops()}
	if ordering == "total" {
		pubsub = append(pubsub, checker.TotalOrder())
	}
	presence := []checker.Checker{checker.Convergence(), checker.Ghosts(), checker.Events(), checker.Linearizable()}
	var cs []checker.Checker
	switch workload {
	case "pubsub":
		cs = pubsub
	case "presence":
		cs = presence
	default:
		cs = append(pubsub, presence...)
	}
	return append(cs, checker.Readiness())
}

func (r *run) nodeIDs() []string {
	ids := make([]string, r.cfg.Nodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	return ids
}

// write stores results.json, meta.json and report.html, and points
// results/latest at the run.
func (r *run) write() error {
	b, err := r.results.Marshal()
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := r.writeMeta(nil); err != nil {
		return err
	}
	if err := report.Write(r.dir, r.meta(nil), r.results, r.ops); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return r.linkLatest()
}

func (r *run) writeMeta(runErr error) error {
	if err := report.WriteMeta(r.dir, r.meta(runErr)); err != nil {
		return fmt.Errorf("write meta: %w", err)
	}
	return r.linkLatest()
}

func (r *run) meta(runErr error) report.Meta {
	m := report.Meta{
		RunID: r.id, Seed: r.cfg.Seed, Command: r.cfg.Command, Topology: r.cfg.Topology,
		Engine: r.cfg.Engine, Nodes: r.cfg.Nodes, Workload: r.cfg.Workload,
		Nemesis: strings.Split(r.cfg.Nemesis, ","), Duration: r.cfg.Duration,
		Started: r.started, Finished: time.Now(), NodeLogs: map[string]string{},
		Mechanisms: map[string]string{}, Extra: map[string]string{},
	}
	for _, id := range append(r.nodeIDs(), "redis", "suite") {
		rel := filepath.Join("logs", id+".log")
		if _, err := os.Stat(filepath.Join(r.dir, rel)); err == nil {
			m.NodeLogs[id] = rel
		}
	}
	for _, op := range r.ops {
		if op.Type == history.Nemesis && op.F == history.FFaultStart && op.Fault != nil {
			m.Mechanisms[op.Fault.Kind] = op.Fault.Mechanism
		}
	}
	m.Extra["heartbeat-interval"] = r.cfg.HeartbeatInterval.String()
	m.Extra["peer-timeout"] = r.cfg.PeerTimeout.String()
	m.Extra["ping-interval"] = r.cfg.PingInterval.String()
	if r.cfg.Ordering != "" {
		m.Extra["ordering"] = r.cfg.Ordering
	}
	if runErr != nil {
		m.Extra["error"] = runErr.Error()
	}
	return m
}

// linkLatest points ResultsDir/latest at this run, replacing the old link
// atomically.
func (r *run) linkLatest() error {
	tmp := filepath.Join(r.cfg.ResultsDir, ".latest-"+r.id)
	_ = os.Remove(tmp)
	if err := os.Symlink(r.id, tmp); err != nil {
		return fmt.Errorf("link latest run: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.cfg.ResultsDir, "latest")); err != nil {
		return fmt.Errorf("link latest run: %w", err)
	}
	return nil
}

// nemesisLabel shortens the fault list for the run id.
func nemesisLabel(list string) string {
	l := strings.NewReplacer(",", "+", "partition-", "p-").Replace(list)
	if len(l) > 40 {
		l = l[:40]
	}
	return l
}
