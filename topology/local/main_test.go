package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
	"github.com/wscluster/wscluster/topology/topologytest"
)

// binary is the wscluster command that TestMain builds.
var binary string

// crashChildEnv names the environment variable that makes the test
// binary run crashChild instead of the tests. Its value is the run folder.
const crashChildEnv = "LOCAL_TOPOLOGY_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(runTests(m))
}

// runTests builds the node binary into a temporary folder, without -race
// so that the nodes start fast, and runs the tests.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wscluster-local-topology-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create a folder for the binary:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "wscluster")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/wscluster/wscluster/cmd/wscluster")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build of the wscluster command failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// requireRedis skips the test without redis-server on PATH, except under
// CI=true, where a CI job must not pass by skipping.
func requireRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not on PATH and CI=true: %v", err)
		}
		t.Skipf("redis-server is not on PATH; install it (Debian: apt-get install redis-server): %v", err)
	}
}

// newConfig returns a configuration with short timings, so that a peer is
// down one second after its last heartbeat.
func newConfig(t *testing.T, engine string, nodes int) topology.Config {
	return topology.Config{
		Engine:            engine,
		Nodes:             nodes,
		Dir:               t.TempDir(),
		Binary:            binary,
		HeartbeatInterval: 200 * time.Millisecond,
		PeerTimeout:       time.Second,
		StartTimeout:      topologytest.WaitTimeout,
	}
}

// startTopology starts a topology and closes it when the test ends. The
// end of every log is logged when the test failed.
func startTopology(t *testing.T, cfg topology.Config) *local.Topology {
	t.Helper()
	topo, err := local.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, topo.Close(context.Background()))
		if t.Failed() {
			topologytest.LogTails(t, cfg.Dir)
		}
	})
	require.NoError(t, topo.Start(context.Background()))
	return topo
}

// countMarkers returns how many start markers the log at path contains.
func countMarkers(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	count := 0
	for line := range strings.Lines(string(data)) {
		var entry struct{ Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == local.StartMarker {
			count++
		}
	}
	return count
}
