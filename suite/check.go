package suite

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/report"
)

// Check runs the checkers again on the history of the run folder dir and
// rewrites its results.json and report.html. It lets a person re-judge an
// old run after a checker changed, without running the cluster again.
func Check(dir string) (checker.Results, error) {
	meta, err := report.ReadMeta(dir)
	if err != nil {
		return checker.Results{}, fmt.Errorf("run folder %q: %w", dir, err)
	}
	ops, err := history.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return checker.Results{}, fmt.Errorf("run folder %q: %w", dir, err)
	}
	run := checker.Run{
		Engine: meta.Engine, Ordering: meta.Extra["ordering"], ReplayMaxAge: replayMaxAge,
		HeartbeatInterval: extraDuration(meta, "heartbeat-interval", time.Second),
		PeerTimeout:       extraDuration(meta, "peer-timeout", 3*time.Second),
		PingInterval:      extraDuration(meta, "ping-interval", 10*time.Second),
	}
	for i := range meta.Nodes {
		run.Nodes = append(run.Nodes, fmt.Sprintf("n%d", i+1))
	}
	res := checker.CheckAll(checker.Input{Run: run, History: ops, Dir: dir}, Checkers(meta.Workload, run.Ordering))
	b, err := res.Marshal()
	if err != nil {
		return res, fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return res, fmt.Errorf("write results: %w", err)
	}
	if err := report.Write(dir, meta, res, ops); err != nil {
		return res, fmt.Errorf("write report: %w", err)
	}
	return res, nil
}

func extraDuration(m report.Meta, key string, def time.Duration) time.Duration {
	d, err := time.ParseDuration(m.Extra[key])
	if err != nil {
		return def
	}
	return d
}
