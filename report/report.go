// Package report turns a finished suite run into report.html, one
// self-contained page per run, and serves the folder of all runs over HTTP.
//
// The page has no external scripts, fonts, styles or images: the CSS is
// inline and the charts are inline SVG drawn with gonum.org/v1/plot. Its
// size depends on the run's length and on the number of anomaly examples,
// not on the history's entry count, because the charts aggregate the
// history into time buckets and the page never lists every entry.
package report

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"time"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

// File names in a run folder that the report links to.
const (
	ReportFile  = "report.html"
	HistoryFile = "history.jsonl"
	ResultsFile = "results.json"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"seconds": func(ns int64) string { return fmt.Sprintf("%.3f", seconds(ns)) },
}).ParseFS(templateFS, "templates/*.tmpl"))

// Write renders the report of one run into dir/report.html. ops is the
// run's whole history; Write reads it but keeps only aggregates and the
// entries that anomaly examples name. The file is written to a temporary
// name first and renamed, so a reader never sees half a report.
func Write(dir string, meta Meta, res checker.Results, ops []history.Op) error {
	page := buildPage(meta, res, ops)
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, "report.html.tmpl", page); err != nil {
		return fmt.Errorf("report: render report of run %q: %w", meta.RunID, err)
	}
	return writeAtomic(filepath.Join(dir, ReportFile), buf.Bytes())
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".report-*.tmp")
	if err != nil {
		return fmt.Errorf("report: create report in %s: %w", filepath.Dir(path), err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("report: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("report: write %s: %w", tmp.Name(), err)
	}
	// CreateTemp makes the file private, but the report is meant to be
	// shared.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("report: chmod %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("report: rename to %s: %w", path, err)
	}
	return nil
}

// page is the data of report.html.
type page struct {
	Meta      Meta
	Verdict   string
	Rerun     string
	Generated string
	Entries   int
	End       int64
	Checkers  []checkerRow
	Charts    []chart
	Anomalies []checkerAnomalies
	Faults    []faultRow
	Phases    []phaseRow
	Links     []link
	Extra     []keyValue
}

func buildPage(meta Meta, res checker.Results, ops []history.Op) page {
	end := endTime(ops)
	windows := checker.Windows(ops)
	phases := checker.PhaseTimes(ops)
	in := chartInput{ops: ops, end: end, buckets: newBuckets(end), windows: windows, phases: phases}
	return page{
		Meta:      meta,
		Verdict:   overallVerdict(res).String(),
		Rerun:     rerunCommand(meta.Command, meta.Seed),
		Generated: time.Now().UTC().Format(time.RFC3339),
		Entries:   len(ops),
		End:       end,
		Checkers:  checkerRows(res),
		Charts:    buildCharts(in),
		Anomalies: anomalySections(res, ops),
		Faults:    faultRows(ops, windows, meta.Mechanisms),
		Phases:    phaseRows(phases),
		Links:     links(meta, res),
		Extra:     sortedPairs(meta.Extra),
	}
}

// overallVerdict is the worst of the run's verdict and every checker's, so
// a page never shows a pass that a checker row contradicts. Results
// without any checker are Unknown: nothing was checked.
func overallVerdict(res checker.Results) checker.Verdict {
	if len(res.Checkers) == 0 {
		return checker.Unknown
	}
	vs := []checker.Verdict{res.Valid}
	for _, r := range res.Checkers {
		vs = append(vs, r.Valid)
	}
	return checker.Combine(vs...)
}
