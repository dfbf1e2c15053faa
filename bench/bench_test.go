package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCPUSecondsAndRSSOfThisProcess(t *testing.T) {
	cpu, err := cpuSeconds(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cpu, 0.0)

	rss, err := rssBytes(os.Getpid())
	require.NoError(t, err)
	assert.Greater(t, rss, int64(1<<20), "a Go test binary holds more than 1 MiB")

	_, err = cpuSeconds(-5)
	assert.Error(t, err)
}

func TestSumSeriesAddsLabelledCounters(t *testing.T) {
	metrics := `# HELP wscluster_peer_envelopes_sent_total Backplane envelopes sent.
wscluster_peer_envelopes_sent_total{kind="publish",peer="n2"} 10
wscluster_peer_envelopes_sent_total{kind="heartbeat",peer="n2"} 2.5e+01
wscluster_peer_envelopes_sent_totalx 99
other_total 7
`
	n, err := sumSeries(strings.NewReader(metrics), "wscluster_peer_envelopes_sent_total")
	require.NoError(t, err)
	assert.Equal(t, int64(35), n)
}

func TestInfoField(t *testing.T) {
	info := "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n"
	n, err := infoField(info, "total_commands_processed")
	require.NoError(t, err)
	assert.Equal(t, int64(1234), n)
	_, err = infoField(info, "missing")
	assert.Error(t, err)
}

func TestPlanInterleavesRepeats(t *testing.T) {
	cfg := Config{Workloads: []string{WorkloadFanout, WorkloadIdle}, Systems: []string{SystemOursNone, SystemPeerSingle},
		Payloads: []int{64, 4096}, Repeat: 2}
	cases := plan(&cfg)

	// Per repeat: fanout at two payloads on two systems, idle on two.
	require.Len(t, cases, 12)
	assert.Equal(t, benchCase{workload: WorkloadFanout, system: SystemOursNone, payload: 64, repeat: 1}, cases[0])
	assert.Equal(t, benchCase{workload: WorkloadFanout, system: SystemPeerSingle, payload: 64, repeat: 1}, cases[1])
	assert.Equal(t, 1, cases[5].repeat)
	assert.Equal(t, 2, cases[6].repeat)
	assert.Equal(t, "fanout-4096", cases[2].label())
	assert.Equal(t, "idle", cases[4].label())
}

func TestConfigRejectsUnknownNames(t *testing.T) {
	for _, cfg := range []Config{
		{Workloads: []string{"storm"}},
		{Systems: []string{"ours-mesh9"}},
		{Payloads: []int{10}},
	} {
		assert.ErrorIs(t, cfg.setDefaults(), ErrInvalidConfig)
	}
}

func TestShareSplitsEvenly(t *testing.T) {
	total := 0
	for i := range 3 {
		total += share(10, i, 3)
	}
	assert.Equal(t, 10, total)
	assert.Equal(t, 4, share(10, 0, 3))
	assert.Equal(t, 3, share(10, 2, 3))
}

func TestComparisonsUseMediansAndTargets(t *testing.T) {
	rep := &Report{Settings: map[string]any{"payloads": []int{64}}}
	for i, ours := range []float64{2.0e6, 2.4e6, 1.0e6} {
		rep.Cases = append(rep.Cases,
			CaseResult{Workload: "fanout-64", System: SystemOursNone, Repeat: i + 1, DeliveredPerCPUSecond: ours},
			CaseResult{Workload: "fanout-64", System: SystemPeerSingle, Repeat: i + 1, DeliveredPerCPUSecond: 1.0e6})
	}
	rep.Cases = append(rep.Cases,
		CaseResult{Workload: WorkloadIdle, System: SystemOursNone, IdleKiBPerConn: 12},
		CaseResult{Workload: WorkloadIdle, System: SystemPeerSingle, IdleKiBPerConn: 24})
	rep.finish()

	byName := map[string]Comparison{}
	for _, c := range rep.Comparisons {
		byName[c.Name] = c
	}
	perCPU := byName["fanout-64 delivered per server CPU-second"]
	assert.InDelta(t, 2.0, perCPU.Ratio, 1e-9, "the ratio of the medians")
	assert.Equal(t, []float64{2.0, 2.4, 1.0}, perCPU.Ratios)
	require.NotNil(t, perCPU.Met)
	assert.True(t, *perCPU.Met)

	idle := byName["idle memory per connection (KiB)"]
	require.NotNil(t, idle.Met)
	assert.False(t, *idle.Met, "12 KiB misses the absolute target of 10 KiB")

	_, ok := byName["cross-node p99 latency (ms), Redis"]
	assert.False(t, ok, "a comparison without cases is left out")
}

func TestReportWriteLinksLatest(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"20260101T000000Z", "20260101T000001Z"} {
		rep := &Report{RunID: id, Comparisons: []Comparison{{Name: "x", Ratio: 0, Ratios: []float64{1}}}}
		require.NoError(t, rep.write(dir))
	}
	target, err := os.Readlink(filepath.Join(dir, "latest.json"))
	require.NoError(t, err)
	assert.Equal(t, "20260101T000001Z.json", target)

	raw, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(raw, &rep))
	assert.Equal(t, "20260101T000001Z", rep.RunID)
}

// TestRunSmokeSingleNode builds wscluster and the load generator, runs the
// smoke sizes of the fanout and idle workloads on one node and checks the
// report. The peer is left out, so the test needs no module download.
func TestRunSmokeSingleNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts processes")
	}
	dir := t.TempDir()
	var table bytes.Buffer
	cfg := Config{Smoke: true, Systems: []string{SystemOursNone}, Workloads: []string{WorkloadFanout, WorkloadIdle},
		OutDir: dir, Out: &table}
	require.NoError(t, Run(context.Background(), cfg))

	raw, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(raw, &rep))
	require.Len(t, rep.Cases, 2)

	fanout := rep.Cases[0]
	assert.Equal(t, "fanout-64", fanout.Workload)
	assert.Positive(t, fanout.DeliveredPerSecond)
	assert.Positive(t, fanout.DeliveredPerCPUSecond)
	assert.Positive(t, fanout.LatencySamples)
	assert.Zero(t, fanout.Lost)
	assert.Zero(t, fanout.Disconnects)

	idle := rep.Cases[1]
	assert.Equal(t, WorkloadIdle, idle.Workload)
	assert.Equal(t, 200, idle.Conns)
	assert.Positive(t, idle.RSSAfterMiB)
	assert.Contains(t, table.String(), "fanout-64")
}
