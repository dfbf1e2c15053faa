package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
	"github.com/wscluster/wscluster/topology/topologytest"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	notExecutable := filepath.Join(t.TempDir(), "wscluster")
	require.NoError(t, os.WriteFile(notExecutable, []byte("text"), 0o644))
	cases := []struct {
		name string
		edit func(*topology.Config)
		want string
	}{
		{"unknown engine", func(c *topology.Config) { c.Engine = "gossip" }, `invalid engine "gossip"`},
		{"no nodes", func(c *topology.Config) { c.Nodes = 0 }, "invalid node count 0"},
		{"negative start timeout", func(c *topology.Config) { c.StartTimeout = -time.Second }, "invalid start timeout"},
		{"no run folder", func(c *topology.Config) { c.Dir = "" }, "missing run folder"},
		{"no binary", func(c *topology.Config) { c.Binary = "" }, "missing wscluster binary"},
		{"missing binary", func(c *topology.Config) { c.Binary = "/nonexistent/wscluster" }, "go build -o /nonexistent/wscluster"},
		{"binary not executable", func(c *topology.Config) { c.Binary = notExecutable }, "not an executable file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newConfig(t, "mesh", 2)
			tc.edit(&cfg)
			_, err := local.New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLinksPerEngine(t *testing.T) {
	requireRedis(t)
	cases := map[string][]topology.Link{
		"none":  {},
		"mesh":  {{"n1", "n2"}, {"n1", "n3"}, {"n2", "n3"}},
		"redis": {{"n1", topology.Redis}, {"n2", topology.Redis}, {"n3", topology.Redis}},
	}
	for engine, want := range cases {
		topo, err := local.New(newConfig(t, engine, 3))
		require.NoError(t, err, engine)
		assert.Equal(t, want, topo.Links(), engine)

		nodes := topo.Nodes()
		require.Len(t, nodes, 3, engine)
		assert.Equal(t, "n3", nodes[2].ID)
		assert.True(t, strings.HasPrefix(nodes[2].WSURL, "ws://127.0.0.1:"), nodes[2].WSURL)
		assert.True(t, strings.HasSuffix(nodes[2].Log, filepath.Join("logs", "n3.log")), nodes[2].Log)
	}
}

func TestStartFailureQuotesNodeLog(t *testing.T) {
	cfg := newConfig(t, "none", 1)
	cfg.ExtraArgs = []string{"--ping-interval", "abc"}
	topo, err := local.New(cfg)
	require.NoError(t, err)

	err = topo.Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start n1")
	assert.Contains(t, err.Error(), "exited before it served")
	assert.Contains(t, err.Error(), `invalid value "abc" for --ping-interval`, "the error quotes the node's log")

	// Start cleaned up after itself, so Close has nothing left to do.
	require.NoError(t, topo.Close(context.Background()))
	_, err = topo.Kill(context.Background(), "n1")
	assert.ErrorContains(t, err, "closed")
}

// requireNodeDown checks that a GET of node n's /healthz fails.
func requireNodeDown(t *testing.T, n topology.Node) {
	t.Helper()
	_, _, err := topologytest.Get(n.HTTPURL + "/healthz")
	require.Error(t, err, "GET /healthz of %s", n.ID)
}

// requireReadyzCode checks the current /readyz status of node n.
func requireReadyzCode(t *testing.T, n topology.Node, want int) {
	t.Helper()
	code, body, err := topologytest.Get(n.HTTPURL + "/readyz")
	require.NoError(t, err)
	require.Equal(t, want, code, "/readyz of %s: %s", n.ID, body)
}
