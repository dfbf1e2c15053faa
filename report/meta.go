package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// MetaFile is the name of the run description in a run folder.
const MetaFile = "meta.json"

// Meta describes one suite run: what ran, with which seed, and where its
// files are. The runner writes it to meta.json next to the history, and
// the report and the run browser read it.
type Meta struct {
	RunID string `json:"run_id"`
	Seed  int64  `json:"seed"`
	// Command is the full command line that started the run.
	Command string `json:"command"`
	// Topology is "local" or "container".
	Topology string   `json:"topology"`
	Engine   string   `json:"engine"`
	Nodes    int      `json:"nodes"`
	Workload string   `json:"workload"`
	Nemesis  []string `json:"nemesis,omitempty"`
	// Duration is the main phase's length. JSON stores it in nanoseconds.
	Duration time.Duration `json:"duration"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	// NodeLogs maps a node id to its log file, relative to the run
	// folder, e.g. "logs/n1.log".
	NodeLogs map[string]string `json:"node_logs,omitempty"`
	// Mechanisms maps a fault kind to how it is injected, e.g.
	// "partition" to "nftables".
	Mechanisms map[string]string `json:"mechanisms,omitempty"`
	// Extra holds any other settings worth showing, by name.
	Extra map[string]string `json:"extra,omitempty"`
}

// WriteMeta writes m to dir/meta.json, replacing an older file.
func WriteMeta(dir string, m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encode meta of run %q: %w", m.RunID, err)
	}
	path := filepath.Join(dir, MetaFile)
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

// ReadMeta reads dir/meta.json. A missing file returns an error that
// matches fs.ErrNotExist.
func ReadMeta(dir string) (Meta, error) {
	path := filepath.Join(dir, MetaFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Meta{}, fmt.Errorf("report: read meta: %w", err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("report: decode %s: %w", path, err)
	}
	return m, nil
}
