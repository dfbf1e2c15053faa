package container_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"

	"github.com/wscluster/wscluster/topology"
	ctopo "github.com/wscluster/wscluster/topology/container"
	"github.com/wscluster/wscluster/topology/topologytest"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	cases := []struct {
		name string
		edit func(*topology.Config, *ctopo.Options)
		want string
	}{
		{"unknown engine", func(c *topology.Config, _ *ctopo.Options) { c.Engine = "gossip" }, `invalid engine "gossip"`},
		{"no nodes", func(c *topology.Config, _ *ctopo.Options) { c.Nodes = 0 }, "invalid node count 0"},
		{"negative start timeout", func(c *topology.Config, _ *ctopo.Options) { c.StartTimeout = -time.Second }, "invalid start timeout"},
		{"no run folder", func(c *topology.Config, _ *ctopo.Options) { c.Dir = "" }, "missing run folder"},
		{"run id with a slash", func(_ *topology.Config, o *ctopo.Options) { o.RunID = "a/b" }, `invalid run id "a/b"`},
		{"run id too long", func(_ *topology.Config, o *ctopo.Options) { o.RunID = strings.Repeat("a", 65) }, "invalid run id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newConfig(t, "mesh", 2)
			var opts ctopo.Options
			tc.edit(&cfg, &opts)
			_, err := ctopo.New(cfg, opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestRunIDFrom(t *testing.T) {
	cases := map[string]string{
		"":                                       "",
		"20261204T231229-mesh-partition+kill-s7": "20261204T231229-mesh-partition-kill-s7",
		"_x":                                     "r_x",
		"a b/c":                                  "a-b-c",
		strings.Repeat("z", 70):                  strings.Repeat("z", 64),
	}
	for name, want := range cases {
		got := ctopo.RunIDFrom(name)
		assert.Equal(t, want, got, "RunIDFrom(%q)", name)
		if got == "" {
			continue
		}
		_, err := ctopo.New(newConfig(t, "none", 1), ctopo.Options{RunID: got})
		assert.NoError(t, err, "New with run id %q", got)
	}
}

func TestNodesAndLinksBeforeStart(t *testing.T) {
	cases := map[string][]topology.Link{
		"none":  {},
		"mesh":  {{"n1", "n2"}, {"n1", "n3"}, {"n2", "n3"}},
		"redis": {{"n1", topology.Redis}, {"n2", topology.Redis}, {"n3", topology.Redis}},
	}
	for engine, want := range cases {
		topo, err := ctopo.New(newConfig(t, engine, 3), ctopo.Options{})
		require.NoError(t, err, engine)
		assert.Equal(t, want, topo.Links(), engine)
		assert.Regexp(t, `^r[0-9a-f]{8}$`, topo.RunID())

		nodes := topo.Nodes()
		require.Len(t, nodes, 3, engine)
		assert.Equal(t, "n3", nodes[2].ID)
		assert.Regexp(t, `^ws://127\.0\.0\.1:\d+/ws$`, nodes[2].WSURL)
		assert.Regexp(t, `^http://127\.0\.0\.1:\d+$`, nodes[2].HTTPURL)
		assert.True(t, strings.HasSuffix(nodes[2].Log, "/logs/n3.log"), nodes[2].Log)

		ctx := context.Background()
		_, err = topo.Kill(ctx, "n1")
		assert.ErrorContains(t, err, "not started")
		_, err = topo.Partition(ctx, want)
		assert.ErrorContains(t, err, "not started")
		assert.NoError(t, topo.HealNetwork(ctx))
		assert.NoError(t, topo.Close(ctx))
		assert.ErrorContains(t, topo.Start(ctx), "Start called twice or after Close")
	}
}

func TestStartFailureQuotesNodeLog(t *testing.T) {
	requireDocker(t)
	cfg := newConfig(t, "none", 1)
	cfg.ExtraArgs = []string{"--ping-interval", "abc"}
	topo, err := ctopo.New(cfg, ctopo.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ctopo.RemoveRun(context.Background(), topo.RunID()) })

	err = topo.Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start n1")
	assert.Contains(t, err.Error(), `invalid value "abc" for --ping-interval`, "the error quotes the node's log")

	// Start removed what it created.
	containers, networks, err := ctopo.ListLabelled(context.Background(), ctopo.LabelRun, topo.RunID())
	require.NoError(t, err)
	assert.Empty(t, containers)
	assert.Empty(t, networks)
	require.NoError(t, topo.Close(context.Background()))
}

func TestStartMissingImage(t *testing.T) {
	requireDocker(t)
	topo, err := ctopo.New(newConfig(t, "none", 1), ctopo.Options{Image: "wscluster/missing:none"})
	require.NoError(t, err)
	err = topo.Start(context.Background())
	require.ErrorIs(t, err, ctopo.ErrImageMissing)
	assert.ErrorContains(t, err, "scripts/build-images.sh")
}

// TestRemoveStaleResources labels a network and a container as owned by a
// process that has ended, and another pair as owned by this test, and
// requires that only the first pair is removed.
func TestRemoveStaleResources(t *testing.T) {
	requireDocker(t)
	ctx := context.Background()
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	run := "stale-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { _ = ctopo.RemoveRun(ctx, run) })

	host, err := os.Hostname()
	require.NoError(t, err)
	labels := func(pid int) map[string]string {
		return map[string]string{
			ctopo.LabelTest: "1", ctopo.LabelRun: run,
			ctopo.LabelOwnerPID: strconv.Itoa(pid), ctopo.LabelOwnerHost: host,
		}
	}
	for _, pid := range []int{ended.Process.Pid, os.Getpid()} {
		nw, err := network.New(ctx, network.WithLabels(labels(pid)))
		require.NoError(t, err)
		_, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
			ContainerRequest: testcontainers.ContainerRequest{
				Image:    ctopo.DefaultImage,
				Labels:   labels(pid),
				Networks: []string{nw.Name},
				HostConfigModifier: func(h *container.HostConfig) {
					h.NetworkMode = container.NetworkMode(nw.Name)
				},
			},
			Started: false,
		})
		require.NoError(t, err)
	}

	removed, err := ctopo.RemoveStale(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, removed, 2, "the network and the container of the ended process")
	for pid, want := range map[int]int{ended.Process.Pid: 0, os.Getpid(): 1} {
		containers, networks, err := ctopo.ListLabelled(ctx, ctopo.LabelOwnerPID, strconv.Itoa(pid))
		require.NoError(t, err)
		assert.Len(t, containers, want, "containers of pid %d", pid)
		assert.Len(t, networks, want, "networks of pid %d", pid)
	}
}

// TestCloseWithCanceledContext closes a running topology with the canceled
// context of an interrupted run, and requires that nothing is left.
func TestCloseWithCanceledContext(t *testing.T) {
	requireDocker(t)
	topo, err := ctopo.New(newConfig(t, "none", 2), ctopo.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ctopo.RemoveRun(context.Background(), topo.RunID()) })
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, topo.Start(ctx))
	for _, n := range topo.Nodes() {
		topologytest.RequireHealthy(t, n)
	}

	cancel()
	require.NoError(t, topo.Close(ctx))
	containers, networks, err := ctopo.ListLabelled(context.Background(), ctopo.LabelRun, topo.RunID())
	require.NoError(t, err)
	assert.Empty(t, containers, "containers left after Close")
	assert.Empty(t, networks, "networks left after Close")
	for _, n := range topo.Nodes() {
		assert.Equal(t, 1, countMarkers(t, n.Log), "start markers in %s", n.Log)
		data, err := os.ReadFile(n.Log)
		require.NoError(t, err)
		assert.Contains(t, string(data), `"msg":"node started"`, "the node's own output in %s", n.Log)
	}
}
