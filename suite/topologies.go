package suite

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/container"
	"github.com/wscluster/wscluster/topology/local"
)

// newTopology creates the topology the configuration names, with its
// node logs in the run folder.
func newTopology(cfg Config, dir string, log *slog.Logger) (topology.Topology, error) {
	tc := topology.Config{
		Engine: cfg.Engine, Nodes: cfg.Nodes, Dir: dir, Binary: cfg.Binary,
		HeartbeatInterval: cfg.HeartbeatInterval, PeerTimeout: cfg.PeerTimeout,
		PingInterval: cfg.PingInterval, Ordering: cfg.Ordering, Logger: log,
	}.WithDefaults()
	switch cfg.Topology {
	case "local":
		abs, err := filepath.Abs(cfg.Binary)
		if err != nil {
			return nil, fmt.Errorf("binary %q: %w", cfg.Binary, err)
		}
		tc.Binary = abs
		return local.New(tc)
	case "container":
		return container.New(tc, container.Options{Image: cfg.Image, RunID: container.RunIDFrom(filepath.Base(dir))})
	default:
		return nil, fmt.Errorf("%w: --topology %q is not available in this build", ErrConfig, cfg.Topology)
	}
}
