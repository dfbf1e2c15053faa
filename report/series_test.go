package report

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/vg/draw"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

func TestNewBucketsWidth(t *testing.T) {
	tests := []struct {
		end       time.Duration
		wantWidth time.Duration
		wantN     int
	}{
		{0, 500 * time.Millisecond, 1},
		{12 * time.Second, 500 * time.Millisecond, 25},
		{200 * time.Second, 500 * time.Millisecond, 401},
		{201 * time.Second, time.Second, 202},
		{time.Hour, 9 * time.Second, 401},
	}
	for _, tt := range tests {
		b := newBuckets(int64(tt.end))
		assert.Equal(t, int64(tt.wantWidth), b.width, tt.end)
		assert.Equal(t, tt.wantN, b.n, tt.end)
		assert.Equal(t, b.n-1, b.index(int64(tt.end)), "the end falls in the last bucket")
	}
}

func TestLatencySeriesMatchesPublishes(t *testing.T) {
	ops := sampleRun(t)
	b := newBuckets(endTime(ops))

	series := latencySeries(ops, b)

	// Before the partition both subscribers get every publish, 4 ms and
	// 6 ms after its invoke, 25 publishes per 500 ms.
	before := series[b.index(int64(2*time.Second))]
	assert.Equal(t, 50, before.N)
	assert.InDelta(t, 4.0, before.P50, 1e-9)
	assert.InDelta(t, 6.0, before.P99, 1e-9)
	assert.InDelta(t, 100.0, before.Rate, 1e-9)

	// During the partition only the subscriber on n1 gets them.
	during := series[b.index(int64(4*time.Second))]
	assert.Equal(t, 25, during.N)
	assert.InDelta(t, 4.0, during.P99, 1e-9)

	// The publish at 6.5 s ended info after 15 ms, so it has no message
	// id. Both of its deliveries, recorded after the info, are matched by
	// payload.
	killed := series[b.index(int64(6500*time.Millisecond))]
	assert.Equal(t, 2, killed.N)
	assert.InDelta(t, 15.0, killed.P50, 1e-9)

	// After the main phase nothing is published.
	after := series[b.index(int64(10*time.Second))]
	assert.Equal(t, 0, after.N)
	assert.True(t, math.IsNaN(after.P50))
	assert.Zero(t, after.Rate)
}

func TestLatencySeriesCountsUnmatchedDeliveries(t *testing.T) {
	b := &runBuilder{}
	b.at(time.Second).add(history.Op{Type: history.Event, F: history.FMessage, Process: 1, Channel: "c1", MsgID: "unknown",
		Value: json.RawMessage(`{"p":5,"e":1,"s":1}`)})

	series := latencySeries(b.ops, newBuckets(endTime(b.ops)))

	assert.Equal(t, 0, series[2].N)
	assert.InDelta(t, 2.0, series[2].Rate, 1e-9, "one delivery in a 0.5 s bucket")
}

func TestRosterSeriesSumsChannelsWithGaps(t *testing.T) {
	b := &runBuilder{}
	members := func(n int) []history.Member { return make([]history.Member, n) }
	b.at(0).add(history.Op{Type: history.Ok, F: history.FMembers, Process: 1, Node: "n1", Channel: "a", Members: members(3)})
	b.at(100 * time.Millisecond).add(history.Op{Type: history.Ok, F: history.FMembers, Process: 1, Node: "n1", Channel: "b", Members: members(2)})
	b.at(1600 * time.Millisecond).add(history.Op{Type: history.Ok, F: history.FMembers, Process: 1, Node: "n1", Channel: "a", Members: members(1)})
	b.at(1700 * time.Millisecond).add(history.Op{Type: history.Ok, F: history.FMembers, Process: 2, Node: "n10", Channel: "a", Members: members(4)})
	b.add(history.Op{Type: history.Fail, F: history.FMembers, Process: 2, Node: "n2", Channel: "a"})

	series := rosterSeries(b.ops, newBuckets(endTime(b.ops)))

	require.Len(t, series, 2, "a failed read is no sample")
	assert.Equal(t, "n1", series[0].Node)
	assert.Equal(t, 5.0, series[0].Values[0], "3 in a plus 2 in b")
	assert.True(t, math.IsNaN(series[0].Values[1]), "no read from 0.5 s to 1 s")
	assert.Equal(t, 3.0, series[0].Values[3], "b keeps its latest read of 2")
	assert.Equal(t, "n10", series[1].Node)
	assert.Equal(t, 4.0, series[1].Values[3])
}

func TestReadinessSeriesKeepsWorstState(t *testing.T) {
	b := &runBuilder{}
	probe := func(at time.Duration, ready *bool, err string) {
		b.at(at).add(history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe, Node: "n1", Ready: ready, Error: err})
	}
	probe(0, boolPtr(true), "")
	probe(250*time.Millisecond, boolPtr(false), "")
	probe(500*time.Millisecond, boolPtr(false), "")
	probe(750*time.Millisecond, nil, "connection refused")
	probe(1000*time.Millisecond, boolPtr(true), "")

	states := readinessSeries(b.ops, newBuckets(endTime(b.ops)))

	assert.Equal(t, []readiness{notReady, noAnswer, ready}, states["n1"])
}

func TestCountOpsByOutcome(t *testing.T) {
	b := &runBuilder{}
	b.add(history.Op{Type: history.Invoke, F: history.FPublish, Process: 1})
	b.add(history.Op{Type: history.Ok, F: history.FPublish, Process: 1})
	b.add(history.Op{Type: history.Fail, F: history.FPublish, Process: 1})
	b.at(time.Second).add(history.Op{Type: history.Info, F: history.FJoin, Process: 2})
	b.add(history.Op{Type: history.Ok, F: "custom", Process: 3})
	b.add(history.Op{Type: history.Ok, F: history.FConnect, Process: 4})
	b.add(history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe})

	counts := countOps(b.ops, newBuckets(endTime(b.ops)))

	require.Len(t, counts, 4)
	assert.Equal(t, []string{history.FConnect, history.FPublish, history.FJoin, "custom"},
		[]string{counts[0].Name, counts[1].Name, counts[2].Name, counts[3].Name})
	assert.Equal(t, []int{1, 0, 0}, counts[1].Ok)
	assert.Equal(t, []int{1, 0, 0}, counts[1].Failed)
	assert.Equal(t, []int{0, 0, 1}, counts[2].Info)
}

func TestLogTicksLabels(t *testing.T) {
	ticks := logTicks{}.Ticks(1, 100)

	var labels []string
	for _, tk := range ticks {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	assert.Equal(t, []string{"1", "2", "5", "10", "20", "50", "100"}, labels)
	assert.Len(t, ticks, 19)
}

func TestDecadeRange(t *testing.T) {
	lo, hi := decadeRange(4, 6)
	assert.Equal(t, 1.0, lo)
	assert.Equal(t, 10.0, hi)

	lo, hi = decadeRange(10, 10)
	assert.Equal(t, 10.0, lo)
	assert.Equal(t, 100.0, hi)

	lo, hi = decadeRange(0.3, 2500)
	assert.InDelta(t, 0.1, lo, 1e-12)
	assert.Equal(t, 10000.0, hi)
}

// TestChartsOfSparseHistories draws histories with a single entry of each
// kind, where gonum's axes have no span, and expects every chart either
// drawn or explained, never an error.
func TestChartsOfSparseHistories(t *testing.T) {
	entries := []history.Op{
		{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe, Node: "n1", Ready: boolPtr(true)},
		{Type: history.Ok, F: history.FMembers, Process: 1, Node: "n1", Channel: "a"},
		{Type: history.Ok, F: history.FPublish, Process: 1, MsgID: "m1"},
		{Type: history.Event, F: history.FMessage, Process: 2, MsgID: "m1"},
		{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis, Fault: &history.Fault{ID: "f1", Kind: "kill"}},
	}
	for _, op := range entries {
		ops := []history.Op{op}
		in := chartInput{ops: ops, end: 0, buckets: newBuckets(0), windows: checker.Windows(ops), phases: checker.PhaseTimes(ops)}

		for _, c := range buildCharts(in) {
			assert.False(t, strings.HasPrefix(c.Note, "chart not drawn"), "%s of %s %s: %s", c.ID, op.Type, op.F, c.Note)
			assert.True(t, c.SVG != "" || c.Note != "", "%s of %s %s is empty", c.ID, op.Type, op.F)
		}
	}
}

func TestRenderSVGRecoversPanic(t *testing.T) {
	_, err := renderSVG(chartWidth, chartHeight, func(dc draw.Canvas) error { panic("bad axis") })

	assert.ErrorContains(t, err, "chart drawing panicked: bad axis")
}
