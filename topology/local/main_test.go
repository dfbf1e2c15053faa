package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
)

// binary is the wscluster command that TestMain builds.
var binary string

// waitTimeout bounds every wait for the cluster to reach a state.
const waitTimeout = 15 * time.Second

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
		StartTimeout:      waitTimeout,
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
			logTails(t, cfg.Dir)
		}
	})
	require.NoError(t, topo.Start(context.Background()))
	return topo
}

// logTails logs the last lines of every log in dir/logs.
func logTails(t *testing.T, dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Logf("read %s: %v", path, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		t.Logf("last lines of %s:\n%s", filepath.Base(path), strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}

// status is the part of /cluster and /readyz that the tests read.
type status struct {
	Ready          bool `json:"ready"`
	ConnectedPeers int  `json:"connected_peers"`
}

// httpClient times out quickly, so that a paused node shows as a timeout.
var httpClient = &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}

// get returns the status code and body of a GET.
func get(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// clusterStatus returns a node's /cluster document.
func clusterStatus(n topology.Node) (status, error) {
	code, body, err := get(n.HTTPURL + "/cluster")
	if err != nil {
		return status{}, err
	}
	if code != http.StatusOK {
		return status{}, fmt.Errorf("GET /cluster of %s: status %d", n.ID, code)
	}
	var s status
	err = json.Unmarshal([]byte(body), &s)
	return s, err
}

// waitUntil polls cond until it returns "" and fails the test with the
// last description of the difference when waitTimeout passes.
func waitUntil(t *testing.T, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < waitTimeout {
		if last = cond(); last == "" {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %s", waitTimeout, what, last)
	return 0
}

// waitConnectedPeers waits until node n reports want connected peers.
func waitConnectedPeers(t *testing.T, n topology.Node, want int) time.Duration {
	t.Helper()
	return waitUntil(t, fmt.Sprintf("%s to report %d connected peers", n.ID, want), func() string {
		s, err := clusterStatus(n)
		if err != nil {
			return err.Error()
		}
		if s.ConnectedPeers != want {
			return fmt.Sprintf("connected_peers is %d", s.ConnectedPeers)
		}
		return ""
	})
}

// waitReadyz waits until node n's /readyz returns want.
func waitReadyz(t *testing.T, n topology.Node, want int) time.Duration {
	t.Helper()
	return waitUntil(t, fmt.Sprintf("/readyz of %s to return %d", n.ID, want), func() string {
		code, body, err := get(n.HTTPURL + "/readyz")
		if err != nil {
			return err.Error()
		}
		if code != want {
			return fmt.Sprintf("status %d, body %s", code, body)
		}
		return ""
	})
}

// requireHealthy checks that node n's /healthz returns 200.
func requireHealthy(t *testing.T, n topology.Node) {
	t.Helper()
	code, _, err := get(n.HTTPURL + "/healthz")
	require.NoError(t, err, "GET /healthz of %s", n.ID)
	require.Equal(t, http.StatusOK, code, "GET /healthz of %s", n.ID)
}

// counter returns the value of one sample of a node's /metrics, such as
// `wscluster_peer_reconnects_total{peer="n2"}`, and 0 when the sample is
// missing, as a counter that never counted is.
func counter(t *testing.T, n topology.Node, sample string) float64 {
	t.Helper()
	code, body, err := get(n.HTTPURL + "/metrics")
	require.NoError(t, err, "GET /metrics of %s", n.ID)
	require.Equal(t, http.StatusOK, code, "GET /metrics of %s", n.ID)
	for line := range strings.Lines(body) {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err, "sample %s of %s", sample, n.ID)
			return v
		}
	}
	return 0
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
