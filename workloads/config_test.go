package workloads

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// oneNode is a node that New accepts. No test here dials it.
var oneNode = []topology.Node{{ID: "n1", WSURL: "ws://127.0.0.1:1/ws"}}

func TestNewUnknownName(t *testing.T) {
	_, err := New("chaos", Config{Nodes: oneNode, Recorder: history.NewRecorder(nil)})

	require.ErrorIs(t, err, ErrUnknownWorkload)
	assert.Contains(t, err.Error(), `"chaos"`)
	assert.Contains(t, err.Error(), "pubsub, presence, mixed")
}

func TestNewInvalidConfig(t *testing.T) {
	rec := history.NewRecorder(nil)
	cases := map[string]Config{
		"no nodes":         {Recorder: rec},
		"no recorder":      {Nodes: oneNode},
		"node without url": {Nodes: []topology.Node{{ID: "n1"}}, Recorder: rec},
		"duplicate node":   {Nodes: append(oneNode, oneNode...), Recorder: rec},
		"negative rate":    {Nodes: oneNode, Recorder: rec, PublishRate: -1},
		"qos1 above one":   {Nodes: oneNode, Recorder: rec, QoS1Fraction: 1.5},
		"negative timeout": {Nodes: oneNode, Recorder: rec, OpTimeout: -time.Second},
		"negative ping":    {Nodes: oneNode, Recorder: rec, PingInterval: -time.Second},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New("pubsub", cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{QoS1Fraction: -1, Channels: 9}.withDefaults()

	assert.Equal(t, DefaultOpTimeout, cfg.OpTimeout)
	assert.Equal(t, 9, cfg.Channels)
	assert.Equal(t, DefaultPresenceChannels, cfg.PresenceChannels)
	assert.Equal(t, DefaultPublishRate, cfg.PublishRate)
	assert.Equal(t, DefaultObserveInterval, cfg.ObserveInterval)
	assert.Equal(t, -1.0, cfg.QoS1Fraction, "a negative fraction stays: no QoS 1")
	assert.NotNil(t, cfg.Logger)
	assert.Equal(t, DefaultPingInterval, cfg.PingInterval)
	require.NotNil(t, cfg.SilentClients)
	assert.True(t, *cfg.SilentClients, "silent clients are on by default")
	assert.False(t, *Config{SilentClients: new(false)}.withDefaults().SilentClients, "new(false) stays off")
}

func TestProcessIDsInNodeOrder(t *testing.T) {
	nodes := []topology.Node{
		{ID: "n1", WSURL: "ws://127.0.0.1:1/ws"},
		{ID: "n2", WSURL: "ws://127.0.0.1:2/ws"},
	}
	w, err := New("mixed", Config{Nodes: nodes, Recorder: history.NewRecorder(nil), PresenceWorkersPerNode: 2})
	require.NoError(t, err)
	m := w.(*mixed)

	var got []string
	for _, wk := range m.env.workers {
		got = append(got, wk.role+"@"+nodes[wk.home].ID)
	}
	assert.Equal(t, []string{
		"publisher@n1", "publisher@n1", "subscriber@n1", "subscriber@n1",
		"publisher@n2", "publisher@n2", "subscriber@n2", "subscriber@n2",
		"observer@n1", "churn@n1", "churn@n1",
		"observer@n2", "churn@n2", "churn@n2",
	}, got)
	for i, wk := range m.env.workers {
		assert.Equal(t, i, wk.process)
	}
	assert.Equal(t, 14, m.env.finalBase)
	require.NoError(t, w.Close())
}
