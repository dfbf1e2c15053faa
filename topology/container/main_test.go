package container_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/container"
)

// waitTimeout bounds every wait for the cluster to reach a state.
const waitTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	// testcontainers-go would pull and start its reaper image otherwise.
	if _, ok := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !ok {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	os.Exit(m.Run())
}

// requireDocker skips the test without a Docker daemon or without the
// images, except under CI=true, where a CI job must not pass by skipping.
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := container.Available(ctx)
	if err == nil {
		err = container.CheckImages(ctx, container.DefaultImage, container.DefaultRedisImage)
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the container topology cannot run and CI=true: %v", err)
	}
	if errors.Is(err, container.ErrImageMissing) {
		t.Skipf("%v", err)
	}
	t.Skipf("Docker is not available: %v", err)
}

// newConfig returns a configuration with short timings, so that a peer is
// down one second after its last heartbeat.
func newConfig(t *testing.T, engine string, nodes int) topology.Config {
	return topology.Config{
		Engine:            engine,
		Nodes:             nodes,
		Dir:               t.TempDir(),
		HeartbeatInterval: 200 * time.Millisecond,
		PeerTimeout:       time.Second,
		StartTimeout:      30 * time.Second,
	}
}

// startTopology starts a topology and, when the test ends, closes it and
// removes whatever of its run is left, by label. The end of every log is
// logged when the test failed.
func startTopology(t *testing.T, cfg topology.Config) *container.Topology {
	t.Helper()
	topo, err := container.New(cfg, container.Options{RunID: "test-" + strconv.FormatInt(time.Now().UnixNano(), 36)})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, topo.Close(ctx))
		require.NoError(t, container.RemoveRun(ctx, topo.RunID()))
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
	Peers          []struct {
		ID        string `json:"id"`
		Connected bool   `json:"connected"`
	} `json:"peers"`
}

// connected reports whether the status lists peer as connected.
func (s status) connected(peer string) bool {
	for _, p := range s.Peers {
		if p.ID == peer {
			return p.Connected
		}
	}
	return false
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

// waitPeer waits until node n reports peer as connected or not.
func waitPeer(t *testing.T, n topology.Node, peer string, connected bool) time.Duration {
	t.Helper()
	return waitUntil(t, fmt.Sprintf("%s to report %s connected=%t", n.ID, peer, connected), func() string {
		s, err := clusterStatus(n)
		if err != nil {
			return err.Error()
		}
		if s.connected(peer) != connected {
			return fmt.Sprintf("peers are %+v", s.Peers)
		}
		return ""
	})
}

// requirePeers checks that node n now reports exactly the given peers as
// connected.
func requirePeers(t *testing.T, n topology.Node, peers ...string) {
	t.Helper()
	s, err := clusterStatus(n)
	require.NoError(t, err)
	for _, p := range peers {
		require.True(t, s.connected(p), "%s reports %s disconnected: %+v", n.ID, p, s.Peers)
	}
	require.Equal(t, len(peers), s.ConnectedPeers, "connected peers of %s: %+v", n.ID, s.Peers)
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

// metric returns the value of one sample of a node's /metrics, such as
// process_start_time_seconds.
func metric(t *testing.T, n topology.Node, sample string) float64 {
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
	t.Fatalf("/metrics of %s has no sample %s", n.ID, sample)
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
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == container.StartMarker {
			count++
		}
	}
	return count
}

// requireNoFaults checks with the helper's status that no rule and no
// delay qdisc is left in the namespaces of names.
func requireNoFaults(t *testing.T, topo *container.Topology, names ...string) {
	t.Helper()
	for _, name := range names {
		st, err := container.SidecarStatus(context.Background(), topo, name)
		require.NoError(t, err, "status of %s", name)
		require.Zero(t, st.NFTRules, "nftables rules left in %s", name)
		require.False(t, st.HasDelay(), "delay qdisc left in %s: %+v", name, st.Qdiscs)
	}
}
