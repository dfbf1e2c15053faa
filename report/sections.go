package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

// maxRelatedOps is how many history entries the page shows per anomaly
// example.
const maxRelatedOps = 5

// maxValueChars is the length at which the page cuts a long Value, such
// as a publish with padding.
const maxValueChars = 160

type keyValue struct {
	Key   string
	Value string
}

// checkerRow is one row of the checker table.
type checkerRow struct {
	Name      string
	Verdict   string
	Summary   string
	Counts    []keyValue
	Stats     []keyValue
	Anomalies int
}

func checkerRows(res checker.Results) []checkerRow {
	rows := make([]checkerRow, 0, len(res.Checkers))
	for _, r := range res.Checkers {
		row := checkerRow{Name: r.Name, Verdict: r.Valid.String(), Summary: r.Summary}
		for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
			row.Counts = append(row.Counts, keyValue{k, strconv.Itoa(r.Counts[k])})
		}
		for _, k := range slices.Sorted(maps.Keys(r.Stats)) {
			row.Stats = append(row.Stats, keyValue{k, formatStat(r.Stats[k])})
		}
		for kind, examples := range r.Anomalies {
			row.Anomalies += anomalyCount(r, kind, examples)
		}
		rows = append(rows, row)
	}
	return rows
}

// anomalyCount is the checker's count of an anomaly kind, or the number of
// examples when the checker did not count it.
func anomalyCount(r checker.Result, kind string, examples []checker.Anomaly) int {
	return max(r.Counts[kind], len(examples))
}

// formatStat prints a stat rounded to three decimals, without trailing
// zeros.
func formatStat(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

// checkerAnomalies are the anomaly kinds of one checker.
type checkerAnomalies struct {
	Checker string
	Verdict string
	Kinds   []anomalyKind
}

type anomalyKind struct {
	Kind     string
	Count    int
	Examples []anomalyExample
}

type anomalyExample struct {
	checker.Anomaly
	// Related are the history entries at Anomaly.Ops, pretty-printed.
	Related []string
	// Hidden counts the entries named but not shown.
	Hidden int
}

func anomalySections(res checker.Results, ops []history.Op) []checkerAnomalies {
	lookup := opLookup(ops)
	var out []checkerAnomalies
	for _, r := range res.Checkers {
		if len(r.Anomalies) == 0 {
			continue
		}
		sec := checkerAnomalies{Checker: r.Name, Verdict: r.Valid.String()}
		for _, kind := range slices.Sorted(maps.Keys(r.Anomalies)) {
			examples := r.Anomalies[kind]
			k := anomalyKind{Kind: kind, Count: anomalyCount(r, kind, examples)}
			for _, a := range examples {
				k.Examples = append(k.Examples, relatedOps(a, lookup))
			}
			sec.Kinds = append(sec.Kinds, k)
		}
		out = append(out, sec)
	}
	return out
}

func relatedOps(a checker.Anomaly, lookup func(int) (history.Op, bool)) anomalyExample {
	ex := anomalyExample{Anomaly: a}
	for i, idx := range a.Ops {
		if i == maxRelatedOps {
			ex.Hidden = len(a.Ops) - i
			break
		}
		op, ok := lookup(idx)
		if !ok {
			ex.Related = append(ex.Related, fmt.Sprintf("#%d: not in the history", idx))
			continue
		}
		ex.Related = append(ex.Related, formatOp(op))
	}
	return ex
}

// opLookup finds entries by Index. A Recorder's history has Index equal to
// the position, so the map is only built for a history that was cut or
// reordered.
func opLookup(ops []history.Op) func(int) (history.Op, bool) {
	var byIndex map[int]int
	return func(idx int) (history.Op, bool) {
		if idx >= 0 && idx < len(ops) && ops[idx].Index == idx {
			return ops[idx], true
		}
		if byIndex == nil {
			byIndex = make(map[int]int, len(ops))
			for pos, op := range ops {
				byIndex[op.Index] = pos
			}
		}
		pos, ok := byIndex[idx]
		if !ok {
			return history.Op{}, false
		}
		return ops[pos], true
	}
}

// opFieldOrder is the order in which formatOp prints an entry's JSON
// fields after the leading columns. Fields missing here follow, sorted.
var opFieldOrder = []string{"node", "epoch", "channel", "member", "msg_id", "qos", "redelivered", "value",
	"members", "event_node", "ready", "metrics", "incarnation", "fault", "code", "error"}

// formatOp prints an entry on one line: index, time in seconds, process,
// type and operation in columns, then its other fields as key=JSON, with a
// long Value cut to maxValueChars.
func formatOp(op history.Op) string {
	if len(op.Value) > maxValueChars {
		cut, _ := json.Marshal(string(op.Value[:maxValueChars]) + "…")
		op.Value = cut
	}
	b, err := json.Marshal(op)
	if err != nil {
		return fmt.Sprintf("#%d: cannot encode: %v", op.Index, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Sprintf("#%d: cannot decode: %v", op.Index, err)
	}
	for _, k := range []string{"index", "time", "type", "f", "process"} {
		delete(fields, k)
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "#%-7d %8.3fs  %-7s %-7s %-14s", op.Index, seconds(op.Time), processName(op.Process), op.Type, op.F)
	for _, k := range opFieldOrder {
		if v, ok := fields[k]; ok {
			fmt.Fprintf(&sb, " %s=%s", k, v)
			delete(fields, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		fmt.Fprintf(&sb, " %s=%s", k, fields[k])
	}
	return sb.String()
}

func processName(p int) string {
	switch p {
	case history.ProcessNemesis:
		return "nemesis"
	case history.ProcessProbe:
		return "probe"
	default:
		return "p" + strconv.Itoa(p)
	}
}

// faultRow is one fault of the nemesis.
type faultRow struct {
	ID, Kind, Detail, Nodes, Links, Mechanism string
	Start, Stop                               int64
	// Unstopped marks a fault without a stop entry. Its Stop is the
	// history's end.
	Unstopped bool
}

func faultRows(ops []history.Op, windows []checker.Window, mechanisms map[string]string) []faultRow {
	stopped := map[string]bool{}
	for _, op := range ops {
		if op.Type == history.Nemesis && op.F == history.FFaultStop && op.Fault != nil {
			stopped[op.Fault.ID] = true
		}
	}
	rows := make([]faultRow, 0, len(windows))
	for _, w := range windows {
		f := w.Fault
		row := faultRow{ID: f.ID, Kind: f.Kind, Detail: f.Detail, Nodes: strings.Join(f.Nodes, " "),
			Mechanism: cmp.Or(f.Mechanism, mechanisms[f.Kind]), Start: w.Start, Stop: w.Stop, Unstopped: !stopped[f.ID]}
		links := make([]string, 0, len(f.Links))
		for _, l := range f.Links {
			links = append(links, l[0]+"–"+l[1])
		}
		row.Links = strings.Join(links, ", ")
		rows = append(rows, row)
	}
	return rows
}

type phaseRow struct {
	Name  string
	Start int64
}

func phaseRows(phases map[string]int64) []phaseRow {
	rows := make([]phaseRow, 0, len(phases))
	for name, t := range phases {
		rows = append(rows, phaseRow{name, t})
	}
	slices.SortFunc(rows, func(a, b phaseRow) int { return cmp.Compare(a.Start, b.Start) })
	return rows
}

// link is a relative link from report.html to a file of the run.
type link struct {
	Name string
	Href string
}

// links returns the run's files: history, results, meta, checker
// artifacts and node logs. Paths that would leave the run folder are
// skipped, so the page only links inside it.
func links(meta Meta, res checker.Results) []link {
	out := []link{
		{"history (JSON lines)", HistoryFile},
		{"results", ResultsFile},
		{"run metadata", MetaFile},
	}
	for _, r := range res.Checkers {
		for _, a := range r.Artifacts {
			out = appendLink(out, r.Name+": "+a, a)
		}
	}
	for _, node := range slices.SortedFunc(maps.Keys(meta.NodeLogs), compareNodes) {
		out = appendLink(out, "log of "+node, meta.NodeLogs[node])
	}
	return out
}

func appendLink(out []link, name, rel string) []link {
	clean := path.Clean(strings.ReplaceAll(rel, `\`, "/"))
	if rel == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(clean, ":") {
		return out
	}
	return append(out, link{Name: name, Href: clean})
}

func sortedPairs(m map[string]string) []keyValue {
	out := make([]keyValue, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, keyValue{k, m[k]})
	}
	return out
}

// seedFlag matches a --seed or -seed flag with its value, in either the
// "--seed 42" or the "--seed=42" form.
var seedFlag = regexp.MustCompile(`(^|\s)--?seed(=|\s+)\S+`)

// rerunCommand returns the run's command with --seed set to the run's
// seed, so a rerun draws the same random choices. Timing still differs
// between runs, so a rerun need not hit the same interleaving.
func rerunCommand(command string, seed int64) string {
	command = strings.TrimSpace(command)
	if command == "" {
		return ""
	}
	pinned := "--seed=" + strconv.FormatInt(seed, 10)
	if seedFlag.MatchString(command) {
		return seedFlag.ReplaceAllString(command, "${1}"+pinned)
	}
	return command + " " + pinned
}
