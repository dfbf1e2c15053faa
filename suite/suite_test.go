package suite_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/suite"
)

// buildNode compiles the node binary, without the race detector as the
// suite's make targets do, with the given build tags.
func buildNode(t *testing.T, tags string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wscluster")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, "github.com/wscluster/wscluster/cmd/wscluster")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// shortConfig is a quick scenario with fast failure detection.
func shortConfig(t *testing.T, bin string) suite.Config {
	return suite.Config{
		Topology: "local", Engine: "mesh", Nodes: 3, Workload: "mixed",
		Duration: 8 * time.Second, Recovery: 5 * time.Second, Seed: 11,
		ResultsDir: t.TempDir(), Binary: bin,
		HeartbeatInterval: 250 * time.Millisecond, PeerTimeout: time.Second,
		NemesisInterval: 2 * time.Second, FaultDuration: 3 * time.Second, Rate: 20,
	}
}

func resultOf(t *testing.T, res checker.Results, name string) checker.Result {
	t.Helper()
	for _, r := range res.Checkers {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no checker %q in results", name)
	return checker.Result{}
}

func TestRunValidMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cfg := shortConfig(t, buildNode(t, ""))
	out, err := suite.Run(context.Background(), cfg)
	require.NoError(t, err)

	for _, r := range out.Results.Checkers {
		assert.Equal(t, checker.Valid, r.Valid, "%s: %s", r.Name, r.Summary)
	}
	assert.Equal(t, checker.Valid, out.Results.Valid)
	for _, f := range []string{"history.jsonl", "results.json", "report.html", "meta.json", "logs/n1.log", "logs/n3.log"} {
		assert.FileExists(t, filepath.Join(out.Dir, f))
	}
	latest, err := os.Readlink(filepath.Join(cfg.ResultsDir, "latest"))
	require.NoError(t, err)
	assert.Equal(t, out.ID, latest)

	// Checking the recorded history again gives the same verdict.
	again, err := suite.Check(out.Dir)
	require.NoError(t, err)
	assert.Equal(t, out.Results.Valid, again.Valid)
}

func TestBrokenPurgeIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cfg := shortConfig(t, buildNode(t, "wscluster_broken_nopurge"))
	cfg.Workload, cfg.Nemesis, cfg.Duration = "presence", "kill", 10*time.Second
	out, err := suite.Run(context.Background(), cfg)
	require.NoError(t, err)

	assert.Equal(t, checker.Invalid, out.Results.Valid)
	ghosts := resultOf(t, out.Results, "ghosts")
	assert.Equal(t, checker.Invalid, ghosts.Valid, ghosts.Summary)
	assert.Positive(t, ghosts.Counts["ghost"]+ghosts.Counts["slow-purge"], "ghost anomalies: %v", ghosts.Counts)
}

func TestBrokenDeliveryIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cfg := shortConfig(t, buildNode(t, "wscluster_broken_lossy"))
	cfg.Workload = "pubsub"
	out, err := suite.Run(context.Background(), cfg)
	require.NoError(t, err)

	assert.Equal(t, checker.Invalid, out.Results.Valid)
	delivery := resultOf(t, out.Results, "delivery")
	assert.Equal(t, checker.Invalid, delivery.Valid, delivery.Summary)
	assert.Positive(t, delivery.Counts["lost"], "counts: %v", delivery.Counts)
	assert.Zero(t, delivery.Counts["duplicated"], "the broken build only drops messages")
}

func TestRunRejectsBadConfig(t *testing.T) {
	cases := map[string]suite.Config{
		"engine":   {Engine: "gossip"},
		"workload": {Workload: "kv"},
		"nemesis":  {Nemesis: "meteor"},
		"ordering": {Engine: "mesh", Ordering: "total"},
		"recovery": {Recovery: time.Second},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			cfg.ResultsDir = t.TempDir()
			_, err := suite.Run(context.Background(), cfg)
			require.ErrorIs(t, err, suite.ErrConfig)
			assert.Contains(t, err.Error(), name)
		})
	}
}

func TestRunWithoutBinaryIsNotRun(t *testing.T) {
	cfg := shortConfig(t, filepath.Join(t.TempDir(), "missing-wscluster"))
	_, err := suite.Run(context.Background(), cfg)
	require.Error(t, err)
	assert.True(t, errors.Is(err, suite.ErrNotRun), "want ErrNotRun, got %v", err)
}
