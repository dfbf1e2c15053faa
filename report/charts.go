package report

import (
	"fmt"
	"html/template"
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

// chart is one figure of the report. When SVG is empty, Note gives the
// reason.
type chart struct {
	ID      string
	Title   string
	Caption string
	SVG     template.HTML
	Note    string
	Legend  []legendItem
}

// chartInput is the input of every chart: the history, its buckets, the
// fault windows and the phase starts.
type chartInput struct {
	ops     []history.Op
	end     int64
	buckets buckets
	windows []checker.Window
	phases  map[string]int64
}

// buildCharts renders the four charts. A chart that fails to render keeps
// its title and names the error, and the others are still drawn.
func buildCharts(in chartInput) []chart {
	charts := []chart{
		{ID: "chart-ops", Title: "Operations over time", Caption: fmt.Sprintf(
			"Client operations per %s bucket by completion time: a green bar where operations completed ok, red dots for failures, amber triangles for unknown outcomes (info). Bigger marks mean more operations.", bucketText(in.buckets))},
		{ID: "chart-latency", Title: "Publish-to-delivery latency and throughput", Caption: fmt.Sprintf(
			"Latency from publish invoke to message event, p50 and p99 per %s bucket on a log scale, and deliveries per second. Deliveries of a publish with unknown outcome are matched by payload.", bucketText(in.buckets))},
		{ID: "chart-roster", Title: "Presence roster size per node", Caption: "Members returned by presence reads on each node, summed over presence channels (latest read per channel). Gaps mean no read on that node. Where lines overlap, the thinner line lies on top."},
		{ID: "chart-ready", Title: "Readiness per node", Caption: fmt.Sprintf(
			"/readyz probes per node, showing the worst state in each %s bucket.", bucketText(in.buckets))},
	}
	draws := []func(chartInput) (drawing, error){drawOps, drawLatency, drawRoster, drawReadiness}
	for i, drawFn := range draws {
		d, err := drawFn(in)
		if err != nil {
			d = drawing{note: "chart not drawn: " + err.Error()}
		}
		charts[i].SVG, charts[i].Note, charts[i].Legend = d.svg, d.note, d.legend
	}
	return charts
}

// drawing is the output of a chart function: an SVG with its legend, or a
// note giving the reason there is nothing to draw.
type drawing struct {
	svg    template.HTML
	note   string
	legend []legendItem
}

func bucketText(b buckets) string {
	return fmt.Sprintf("%g s", seconds(b.width))
}

// drawOps draws one lane per operation name with three rows: ok bars on
// top, failures in the middle and info outcomes at the bottom.
func drawOps(in chartInput) (drawing, error) {
	counts := countOps(in.ops, in.buckets)
	if len(counts) == 0 {
		return drawing{note: "The history has no client operations."}, nil
	}
	p := newPlot("", in.end)
	p.Add(backdrop{windows: in.windows, phases: in.phases, labels: true})

	names := make([]string, len(counts))
	var bars []segment
	var fails, infos plotter.XYZs
	for lane, c := range counts {
		names[lane] = c.Name
		y := float64(lane)
		bars = append(bars, okBars(in.buckets, c.Ok, y+0.25)...)
		fails = append(fails, countMarks(in.buckets, c.Failed, y)...)
		infos = append(infos, countMarks(in.buckets, c.Info, y-0.25)...)
	}
	p.Add(segments{bars: bars, width: vg.Points(3)})
	failPlot, err := markPlot(fails, draw.CircleGlyph{}, colorFail)
	if err != nil {
		return drawing{}, err
	}
	infoPlot, err := markPlot(infos, draw.TriangleGlyph{}, colorInfo)
	if err != nil {
		return drawing{}, err
	}
	p.Add(failPlot, infoPlot)
	p.NominalY(names...)
	p.Y.Min, p.Y.Max = -0.6, float64(len(names))-0.4
	setTimeAxis(p, in.end)

	height := max(2.2*vg.Inch, vg.Length(len(names))*0.4*vg.Inch+0.9*vg.Inch)
	svg, err := renderSVG(chartWidth, height, func(dc draw.Canvas) error { p.Draw(dc); return nil })
	legend := []legendItem{
		{"ok", hexColor(colorOk), "bar"},
		{"fail", hexColor(colorFail), "dot"},
		{"info (outcome unknown)", hexColor(colorInfo), "triangle"},
	}
	return drawing{svg: svg, legend: legend}, err
}

// okBars merges consecutive buckets with ok completions into one bar.
func okBars(b buckets, ok []int, y float64) []segment {
	var bars []segment
	for i := 0; i < len(ok); i++ {
		if ok[i] == 0 {
			continue
		}
		j := i
		for j+1 < len(ok) && ok[j+1] > 0 {
			j++
		}
		bars = append(bars, segment{X0: b.start(i), X1: b.start(j + 1), Y: y, Color: colorOk})
		i = j
	}
	return bars
}

// countMarks returns one mark per non-empty bucket with the count as Z.
func countMarks(b buckets, counts []int, y float64) plotter.XYZs {
	var marks plotter.XYZs
	for i, n := range counts {
		if n > 0 {
			marks = append(marks, plotter.XYZ{X: b.mid(i), Y: y, Z: float64(n)})
		}
	}
	return marks
}

// markPlot draws marks whose radius grows with the log of their count.
func markPlot(marks plotter.XYZs, shape draw.GlyphDrawer, clr color.Color) (*plotter.Scatter, error) {
	s, err := plotter.NewScatter(plotter.XYValues{XYZer: marks})
	if err != nil {
		return nil, fmt.Errorf("report: marks: %w", err)
	}
	s.GlyphStyle = draw.GlyphStyle{Color: clr, Radius: vg.Points(2.5), Shape: shape}
	base := s.GlyphStyle
	s.GlyphStyleFunc = func(i int) draw.GlyphStyle {
		g := base
		g.Radius = vg.Points(1.5 + math.Min(3.5, math.Log10(marks[i].Z)*1.5))
		return g
	}
	return s, nil
}

// drawLatency stacks the latency percentiles above the delivery rate.
func drawLatency(in chartInput) (drawing, error) {
	series := latencySeries(in.ops, in.buckets)
	xs := make([]float64, len(series))
	p50, p99, rate := nanSlice(len(series)), nanSlice(len(series)), make([]float64, len(series))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range series {
		xs[i] = in.buckets.mid(i)
		rate[i] = s.Rate
		if s.N > 0 {
			// A log axis needs positive values; 1 µs is below anything
			// the suite can measure.
			p50[i], p99[i] = math.Max(s.P50, 0.001), math.Max(s.P99, 0.001)
			lo, hi = math.Min(lo, p50[i]), math.Max(hi, p99[i])
		}
	}
	if math.IsInf(lo, 1) {
		return drawing{note: "The history has no message deliveries that match a publish."}, nil
	}

	top := newPlot("latency (ms)", in.end)
	top.Add(backdrop{windows: in.windows, phases: in.phases, labels: true})
	top.Y.Scale = plot.LogScale{}
	top.Y.Tick.Marker = logTicks{}
	top.Y.Min, top.Y.Max = decadeRange(lo, hi)
	if err := addLines(top, xs, p50, draw.LineStyle{Color: nodePalette[0], Width: vg.Points(1.2)}); err != nil {
		return drawing{}, err
	}
	if err := addLines(top, xs, p99, draw.LineStyle{Color: nodePalette[3], Width: vg.Points(1.2)}); err != nil {
		return drawing{}, err
	}

	bottom := newPlot("deliveries/s", in.end)
	bottom.Add(backdrop{windows: in.windows, phases: in.phases})
	if err := addLines(bottom, xs, rate, draw.LineStyle{Color: nodePalette[2], Width: vg.Points(1.2)}); err != nil {
		return drawing{}, err
	}
	bottom.Y.Min = 0
	addHeadroom(bottom)
	setTimeAxis(top, in.end)
	setTimeAxis(bottom, in.end)

	svg, err := renderSVG(chartWidth, chartHeight*1.6, func(dc draw.Canvas) error {
		tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Points(6)}
		canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
		top.Draw(canvases[0][0])
		bottom.Draw(canvases[1][0])
		return nil
	})
	legend := []legendItem{
		{"latency p50", hexColor(nodePalette[0]), "line"},
		{"latency p99", hexColor(nodePalette[3]), "line"},
		{"deliveries/s", hexColor(nodePalette[2]), "line"},
	}
	return drawing{svg: svg, legend: legend}, err
}

// addHeadroom raises the top of a linear y axis above the data, so a line
// at the maximum does not run along the plot's top edge.
func addHeadroom(p *plot.Plot) {
	p.Y.Max = p.Y.Max*1.08 + 0.5
}

// drawRoster draws one line per node of the roster sizes it returned.
// Earlier nodes get wider lines, so equal rosters stay visible as nested
// lines instead of hiding each other.
func drawRoster(in chartInput) (drawing, error) {
	series := rosterSeries(in.ops, in.buckets)
	if len(series) == 0 {
		return drawing{note: "The history has no presence members reads."}, nil
	}
	p := newPlot("members seen", in.end)
	p.Add(backdrop{windows: in.windows, phases: in.phases, labels: true})
	xs := make([]float64, in.buckets.n)
	for i := range xs {
		xs[i] = in.buckets.mid(i)
	}
	var legend []legendItem
	for i, s := range series {
		clr := nodePalette[i%len(nodePalette)]
		width := vg.Points(math.Min(1.2+1.2*float64(len(series)-1-i), 6))
		if err := addLines(p, xs, s.Values, draw.LineStyle{Color: clr, Width: width}); err != nil {
			return drawing{}, err
		}
		legend = append(legend, legendItem{s.Node, hexColor(clr), "line"})
	}
	p.Y.Min = 0
	addHeadroom(p)
	setTimeAxis(p, in.end)
	svg, err := renderSVG(chartWidth, chartHeight, func(dc draw.Canvas) error { p.Draw(dc); return nil })
	return drawing{svg: svg, legend: legend}, err
}

// drawReadiness draws one lane per node colored by its probe state.
func drawReadiness(in chartInput) (drawing, error) {
	states := readinessSeries(in.ops, in.buckets)
	if len(states) == 0 {
		return drawing{note: "The history has no readiness probes."}, nil
	}
	nodes := make([]string, 0, len(states))
	for n := range states {
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, compareNodes)

	p := newPlot("", in.end)
	p.Add(backdrop{windows: in.windows, phases: in.phases, labels: true})
	var bars []segment
	for lane, node := range nodes {
		bars = append(bars, stateBars(in.buckets, states[node], float64(lane))...)
	}
	p.Add(segments{bars: bars, width: vg.Points(9)})
	p.NominalY(nodes...)
	p.Y.Min, p.Y.Max = -0.7, float64(len(nodes))-0.3
	setTimeAxis(p, in.end)

	height := max(1.6*vg.Inch, vg.Length(len(nodes))*0.3*vg.Inch+1.1*vg.Inch)
	svg, err := renderSVG(chartWidth, height, func(dc draw.Canvas) error { p.Draw(dc); return nil })
	legend := []legendItem{
		{"ready", hexColor(colorOk), "bar"},
		{"not ready", hexColor(colorFail), "bar"},
		{"no answer", hexColor(colorNoReply), "bar"},
	}
	return drawing{svg: svg, legend: legend}, err
}

// stateBars merges consecutive buckets of the same state into one bar.
func stateBars(b buckets, states []readiness, y float64) []segment {
	colors := map[readiness]color.Color{ready: colorOk, notReady: colorFail, noAnswer: colorNoReply}
	var bars []segment
	for i := 0; i < len(states); i++ {
		if states[i] == noSample {
			continue
		}
		j := i
		for j+1 < len(states) && states[j+1] == states[i] {
			j++
		}
		bars = append(bars, segment{X0: b.start(i), X1: b.start(j + 1), Y: y, Color: colors[states[i]]})
		i = j
	}
	return bars
}
