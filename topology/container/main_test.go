package container_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/container"
	"github.com/wscluster/wscluster/topology/topologytest"
)

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
