package report

import (
	"encoding/json"
	"html/template"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

// writeReport writes a report into a new folder and returns its HTML.
func writeReport(t *testing.T, meta Meta, res checker.Results, ops []history.Op) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, Write(dir, meta, res, ops))
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	require.NoError(t, err)
	return string(b)
}

// assertSelfContained fails if the page loads anything from elsewhere.
func assertSelfContained(t *testing.T, page string) {
	t.Helper()
	lower := strings.ToLower(page)
	assert.NotContains(t, lower, `src="http`)
	assert.NotContains(t, lower, `<link rel="stylesheet" href=`)
	assert.NotContains(t, lower, `<script`)
	assert.NotContains(t, lower, `<img`)
	assert.NotContains(t, lower, `@import`)
	assert.NotContains(t, lower, `url(`)
	assert.NotRegexp(t, regexp.MustCompile(`href="(https?:)?//`), lower)
}

func TestWriteValidRun(t *testing.T) {
	page := writeReport(t, sampleMeta(), validResults(), sampleRun(t))

	assert.Contains(t, page, `<div id="verdict" class="verdict valid">valid</div>`)
	assert.Contains(t, page, `id="checker-delivery"`)
	assert.Contains(t, page, `id="checker-presence"`)
	assert.Contains(t, page, "0 of 600 expected deliveries lost outside fault windows")
	assert.Contains(t, page, "<span>latency-p99-ms 6.25</span>")
	assert.Contains(t, page, "No checker reported an anomaly.")

	// Every chart is inline SVG, with the faults shaded and named.
	assert.Equal(t, 4, strings.Count(page, "<svg "), "one SVG per chart")
	for _, id := range []string{"chart-ops", "chart-latency", "chart-roster", "chart-ready"} {
		assert.Regexp(t, regexp.MustCompile(`(?s)<figure id="`+id+`">\s*<h3>[^<]+</h3>\s*<div class="chart"><svg `), page, id)
	}
	assert.Contains(t, page, ">f1 partition</text>")
	assert.Contains(t, page, ">f2 kill</text>")
	assert.Contains(t, page, ">recovery</text>", "phase line label")
	assert.Contains(t, page, "fill-opacity", "fault bands are translucent")
	assert.NotContains(t, page, "chart not drawn")

	// The fault table names kind, mechanism and times.
	assert.Contains(t, page, `<tr class="fault-row"><td>f1</td><td>partition</td><td>isolate [n3] | [n1 n2]<br><small>cut: n1–n3, n2–n3</small></td><td>n1 n2 n3</td><td>tcp-proxy</td><td class="num">3.000</td><td class="num">5.000</td></tr>`)
	assert.Contains(t, page, `<td>f2</td><td>kill</td>`)
	assert.NotContains(t, page, "never stopped")

	// Header and files.
	assert.Contains(t, page, `<code class="cmd" id="rerun">wscluster-suite run --engine mesh --nemesis partition,kill --duration 7s --seed=42</code>`)
	assert.Contains(t, page, `<a href="logs/n2.log">log of n2</a>`)
	assert.Contains(t, page, `<a href="history.jsonl">`)
	assert.Contains(t, page, `<a href="results.json">`)
	assert.Contains(t, page, "<dt>peer-timeout</dt><dd>1s</dd>")
	assertSelfContained(t, page)
}

func invalidResults() checker.Results {
	res := validResults()
	res.Valid = checker.Invalid
	res.Checkers[0].Valid = checker.Invalid
	res.Checkers[0].Summary = "3 of 600 expected deliveries lost outside fault windows"
	res.Checkers[0].Artifacts = []string{"delivery/lost.txt"}
	// 12 ops named: only the first maxRelatedOps are shown.
	ops := []int{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}
	res.Checkers[0].AddAnomaly("lost-outside", checker.Anomaly{
		Description: "message m7 never reached subscriber 1 on n3",
		Time:        int64(1140 * time.Millisecond), Node: "n3", Channel: "c1", MsgID: "m7", Ops: ops,
	})
	res.Checkers[0].AddAnomaly("lost-outside", checker.Anomaly{Description: "message m9 lost", Ops: []int{999999}})
	res.Checkers[0].Counts["lost-outside"] = 3
	return res
}

func TestWriteInvalidRun(t *testing.T) {
	ops := sampleRun(t)
	page := writeReport(t, sampleMeta(), invalidResults(), ops)

	assert.Contains(t, page, `<div id="verdict" class="verdict invalid">invalid</div>`)
	assert.Contains(t, page, `<span class="badge invalid">invalid</span>`)
	assert.Contains(t, page, "<summary>lost-outside: 3 (2 examples shown)</summary>")
	assert.Contains(t, page, `<div class="description">message m7 never reached subscriber 1 on n3</div>`)
	assert.Contains(t, page, "at 1.140 s · node n3 · channel c1 · msg m7 · entries #20, #21")

	// The related entries are the history's, pretty-printed, at most 5.
	assert.Contains(t, page, template.HTMLEscapeString(formatOp(ops[20])))
	assert.Contains(t, page, template.HTMLEscapeString(formatOp(ops[24])))
	assert.NotContains(t, page, template.HTMLEscapeString(formatOp(ops[25])))
	assert.Contains(t, page, "… 7 more entries not shown")
	assert.Contains(t, page, "#999999: not in the history")
	assert.Contains(t, page, `<a href="delivery/lost.txt">delivery: delivery/lost.txt</a>`)
	assertSelfContained(t, page)
}

func TestWriteEscapesHistoryStrings(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	ops := sampleRun(t)
	fault := &history.Fault{ID: "f9", Kind: evil, Detail: evil, Nodes: []string{evil}}
	b := &runBuilder{ops: ops, now: ops[len(ops)-1].Time}
	b.add(history.Op{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis, Fault: fault})
	b.add(history.Op{Type: history.Ok, F: history.FMembers, Process: 10, Node: "n1", Channel: evil, Members: []history.Member{{Member: evil}}})
	meta := sampleMeta()
	meta.Command = "wscluster-suite run " + evil
	meta.NodeLogs["n1"] = `javascript:alert(1)`
	meta.NodeLogs["n2"] = "../../etc/passwd"
	res := invalidResults()
	res.Checkers[0].Summary = evil
	res.Checkers[0].Anomalies["lost-outside"][0].Channel = evil
	res.Checkers[0].Anomalies["lost-outside"][0].Ops = []int{len(b.ops) - 1}

	page := writeReport(t, meta, res, b.ops)

	assert.NotContains(t, page, "<script")
	assert.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	assert.NotContains(t, page, "javascript:")
	assert.NotContains(t, page, "etc/passwd")
	assert.Contains(t, page, "never stopped (history ends at ")
	assert.Contains(t, page, `<a href="logs/n3.log">`)
}

func TestWriteWithoutCheckersIsUnknown(t *testing.T) {
	page := writeReport(t, Meta{RunID: "r1"}, checker.Results{Valid: checker.Valid}, nil)

	assert.Contains(t, page, `class="verdict unknown">unknown</div>`)
	assert.Contains(t, page, "No checker ran")
	assert.Contains(t, page, "The history has no client operations.")
	assert.Contains(t, page, "(not available: the command was not recorded)")
	assertSelfContained(t, page)
}

func TestWriteWorstVerdictWins(t *testing.T) {
	res := validResults()
	res.Checkers[1].Valid = checker.Unknown

	page := writeReport(t, sampleMeta(), res, sampleRun(t))

	assert.Contains(t, page, `class="verdict unknown">unknown</div>`)
}

// TestWriteSizeIndependentOfEntries writes two runs of the same length,
// one with twice as many entries, and expects pages of about the same
// size: the charts aggregate into buckets, and the page never lists every
// entry. Both histories are dense enough to fill every bucket with marks,
// the largest chart a run of that length can have.
func TestWriteSizeIndependentOfEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a history of 400000 entries")
	}
	small := writeReport(t, sampleMeta(), validResults(), busyRun(200_000))
	large := writeReport(t, sampleMeta(), validResults(), busyRun(400_000))

	t.Logf("report sizes: %d bytes for 200000 entries, %d bytes for 400000", len(small), len(large))
	assert.Less(t, len(large), 400_000)
	assert.Less(t, float64(len(large)), 1.1*float64(len(small)))
}

// busyRun builds a 10-minute history of n entries: publishes with one
// delivery each, failures every 97th and info outcomes every 89th publish.
func busyRun(n int) []history.Op {
	b := &runBuilder{ops: make([]history.Op, 0, n)}
	span := int64(10 * time.Minute)
	step := span / int64(n/3)
	b.add(history.Op{Type: history.Nemesis, F: history.FFaultStart, Process: history.ProcessNemesis, Fault: &history.Fault{ID: "f1", Kind: "pause", Nodes: []string{"n1"}}})
	for i := 0; len(b.ops)+3 <= n; i++ {
		b.now = int64(i) * step
		id := "m" + time.Duration(i).String()
		b.add(history.Op{Type: history.Invoke, F: history.FPublish, Process: i % 8, Node: "n1", Epoch: 1, Channel: "c1"})
		switch {
		case i%97 == 0:
			b.add(history.Op{Type: history.Fail, F: history.FPublish, Process: i % 8, Node: "n1", Epoch: 1, Code: 1005})
		case i%89 == 0:
			b.add(history.Op{Type: history.Info, F: history.FPublish, Process: i % 8, Node: "n1", Epoch: 1})
		default:
			b.add(history.Op{Type: history.Ok, F: history.FPublish, Process: i % 8, Node: "n1", Epoch: 1, MsgID: id})
		}
		b.now += step / 2
		b.add(history.Op{Type: history.Event, F: history.FMessage, Process: 9, Node: "n2", Epoch: 1, Channel: "c1", MsgID: id})
	}
	return b.ops
}

func TestRerunCommand(t *testing.T) {
	tests := []struct {
		command string
		want    string
	}{
		{"wscluster-suite run --seed 7 --duration 60s", "wscluster-suite run --seed=42 --duration 60s"},
		{"wscluster-suite run --seed=7", "wscluster-suite run --seed=42"},
		{"wscluster-suite run -seed 7", "wscluster-suite run --seed=42"},
		{"wscluster-suite run --duration 60s", "wscluster-suite run --duration 60s --seed=42"},
		{"wscluster-suite run --seedless x", "wscluster-suite run --seedless x --seed=42"},
		{"", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, rerunCommand(tt.command, 42), tt.command)
	}
}

func TestFormatOpCutsLongValue(t *testing.T) {
	value, err := json.Marshal(history.Payload{Process: 1, Epoch: 1, Seq: 1, Pad: strings.Repeat("p", 4000)})
	require.NoError(t, err)

	line := formatOp(history.Op{Index: 5, Time: int64(1500 * time.Millisecond), Type: history.Invoke, F: history.FPublish, Value: value})

	assert.Less(t, len(line), 300)
	assert.True(t, strings.HasPrefix(line, "#5          1.500s  p0      invoke  publish        value=\"{\\\"p\\\":1,"), line)
	assert.Contains(t, line, `…"`)
}

func TestFormatOpNamesFields(t *testing.T) {
	op := history.Op{Index: 7, Time: int64(2 * time.Second), Type: history.Event, F: history.FMessage, Process: 3,
		Node: "n2", Epoch: 1, Channel: "c1", MsgID: "m9", Value: json.RawMessage(`{"p":1,"e":1,"s":4}`)}

	line := formatOp(op)

	assert.Equal(t, `#7          2.000s  p3      event   message        node="n2" epoch=1 channel="c1" msg_id="m9" value={"p":1,"e":1,"s":4}`, line)
	assert.Contains(t, formatOp(history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe}), " probe ")
}

func TestMetaRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := sampleMeta()

	require.NoError(t, WriteMeta(dir, want))
	got, err := ReadMeta(dir)

	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestReadMetaMissing(t *testing.T) {
	_, err := ReadMeta(t.TempDir())

	assert.ErrorIs(t, err, os.ErrNotExist)
}
