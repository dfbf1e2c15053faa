package report

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/history"
)

// Colors of outcomes and states, shared by the charts and the page's CSS.
var (
	colorOk      = rgb(0x2e, 0x7d, 0x32)
	colorFail    = rgb(0xc6, 0x28, 0x28)
	colorInfo    = rgb(0xe0, 0x8e, 0x00)
	colorNoReply = rgb(0x75, 0x75, 0x75)
	colorPhase   = rgb(0x60, 0x60, 0x60)
)

// nodePalette colors one line per node, in node order.
var nodePalette = []color.Color{
	rgb(0x1f, 0x77, 0xb4), rgb(0xff, 0x7f, 0x0e), rgb(0x2c, 0xa0, 0x2c),
	rgb(0xd6, 0x27, 0x28), rgb(0x94, 0x67, 0xbd), rgb(0x8c, 0x56, 0x4b),
	rgb(0xe3, 0x77, 0xc2), rgb(0x7f, 0x7f, 0x7f), rgb(0xbc, 0xbd, 0x22),
	rgb(0x17, 0xbe, 0xcf),
}

// faultColors shade fault windows by kind. Unknown kinds get faultDefault.
var (
	faultColors = map[string]color.Color{
		history.FaultPartition:  rgba(0x42, 0x85, 0xf4, 0x38),
		history.FaultLatency:    rgba(0xff, 0x98, 0x00, 0x38),
		history.FaultLoss:       rgba(0xfb, 0xc0, 0x2d, 0x38),
		history.FaultReset:      rgba(0x00, 0x96, 0x88, 0x38),
		history.FaultKill:       rgba(0xe5, 0x39, 0x35, 0x38),
		history.FaultPause:      rgba(0x8e, 0x24, 0xaa, 0x38),
		history.FaultRedisKill:  rgba(0x79, 0x55, 0x48, 0x40),
		history.FaultRedisPause: rgba(0x79, 0x55, 0x48, 0x30),
	}
	faultDefault = rgba(0x9e, 0x9e, 0x9e, 0x40)
)

func rgb(r, g, b uint8) color.Color     { return color.NRGBA{r, g, b, 0xff} }
func rgba(r, g, b, a uint8) color.Color { return color.NRGBA{r, g, b, a} }

// sansFont is the chart font. Its SVG family name gets generic fallbacks
// in svgFontFallback, because a browser without Liberation Sans would
// otherwise fall back to a serif font.
var sansFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

// Chart sizes in points. The page's CSS scales every chart to the page
// width, keeping the aspect ratio.
const (
	chartWidth  = 9 * vg.Inch
	chartHeight = 3.2 * vg.Inch
)

// newPlot returns a plot with the report's fonts and a time axis in
// seconds from 0 to end.
func newPlot(yLabel string, end int64) *plot.Plot {
	p := plot.New()
	p.X.Label.Text = "time since run start (s)"
	p.Y.Label.Text = yLabel
	for _, sty := range []*text.Style{&p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label} {
		sty.Font = font.From(sansFont, 9)
	}
	setTimeAxis(p, end)
	return p
}

// setTimeAxis sets the time axis to [0, end] in seconds. Charts call it
// again after adding data, because a bucket's middle can lie past end and
// would widen the axis, so stacked panels would no longer line up.
func setTimeAxis(p *plot.Plot, end int64) {
	p.X.Min, p.X.Max = 0, math.Max(seconds(end), 1)
	p.X.Tick.Marker = secondTicks{}
}

// secondTicks places ticks like gonum's default ticker, but labels them
// without trailing zeros ("250" rather than "250.00").
type secondTicks struct{}

// Ticks implements plot.Ticker.
func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(math.Round(ticks[i].Value*1e6)/1e6, 'f', -1, 64)
		}
	}
	return ticks
}

// backdrop draws fault windows as shaded bands with their id and kind on
// top, and phase starts as dashed lines named at the bottom. Add it before
// the data so that the data stays on top.
type backdrop struct {
	windows []checker.Window
	phases  map[string]int64
	labels  bool
}

// Plot implements plot.Plotter.
func (b backdrop) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	sty := text.Style{Color: color.Black, Font: font.From(sansFont, 7), Handler: p.TextHandler, XAlign: draw.XLeft, YAlign: draw.YTop}
	lineHeight := sty.Height("f") * 1.15

	// Labels of overlapping faults go to lower lanes, so none covers
	// another.
	var laneEnds []vg.Length
	for _, w := range b.windows {
		x0, x1 := clampX(c, trX(seconds(w.Start))), clampX(c, trX(seconds(w.Stop)))
		x1 = max(x1, x0+1)
		c.FillPolygon(faultColor(w.Fault.Kind), []vg.Point{
			{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
		})
		if !b.labels {
			continue
		}
		label := w.Fault.ID + " " + w.Fault.Kind
		lane := pickLane(&laneEnds, x0, x0+sty.Width(label)+2)
		c.FillText(sty, vg.Point{X: x0 + 1, Y: c.Max.Y - 1 - vg.Length(lane)*lineHeight}, label)
	}

	b.plotPhases(c, trX, sty)
}

func (b backdrop) plotPhases(c draw.Canvas, trX func(float64) vg.Length, sty text.Style) {
	line := draw.LineStyle{Color: colorPhase, Width: vg.Points(0.6), Dashes: []vg.Length{vg.Points(3), vg.Points(3)}}
	sty.YAlign = draw.YBottom
	sty.Color = colorPhase
	for _, name := range []string{history.PhaseMain, history.PhaseHeal, history.PhaseRecovery, history.PhaseFinal} {
		t, ok := b.phases[name]
		if !ok {
			continue
		}
		x := trX(seconds(t))
		if x < c.Min.X || x > c.Max.X {
			continue
		}
		c.StrokeLine2(line, x, c.Min.Y, x, c.Max.Y)
		if b.labels {
			c.FillText(sty, vg.Point{X: x + 1, Y: c.Min.Y + 1}, name)
		}
	}
}

// pickLane returns the first label lane free at x0 and marks it used up to
// x1.
func pickLane(laneEnds *[]vg.Length, x0, x1 vg.Length) int {
	for i, end := range *laneEnds {
		if end <= x0 {
			(*laneEnds)[i] = x1
			return i
		}
	}
	*laneEnds = append(*laneEnds, x1)
	return len(*laneEnds) - 1
}

func clampX(c draw.Canvas, x vg.Length) vg.Length {
	return min(max(x, c.Min.X), c.Max.X)
}

func faultColor(kind string) color.Color {
	if c, ok := faultColors[kind]; ok {
		return c
	}
	return faultDefault
}

// segment is a horizontal bar from X0 to X1 at height Y, in data units.
type segment struct {
	X0, X1, Y float64
	Color     color.Color
}

// segments draws horizontal bars. The charts use them for state lanes,
// because a bar per run of equal states needs far fewer SVG elements than
// one glyph per sample.
type segments struct {
	bars  []segment
	width vg.Length
}

// Plot implements plot.Plotter.
func (s segments) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for _, b := range s.bars {
		line := []vg.Point{{X: trX(b.X0), Y: trY(b.Y)}, {X: trX(b.X1), Y: trY(b.Y)}}
		c.StrokeLines(draw.LineStyle{Color: b.Color, Width: s.width}, c.ClipLinesX(line)...)
	}
}

// addLines adds one line per run of finite values, because a gonum line
// cannot have gaps.
func addLines(p *plot.Plot, xs, ys []float64, sty draw.LineStyle) error {
	var run plotter.XYs
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		l, err := plotter.NewLine(run)
		if err != nil {
			return fmt.Errorf("report: chart line: %w", err)
		}
		l.LineStyle = sty
		p.Add(l)
		run = nil
		return nil
	}
	for i, y := range ys {
		if math.IsNaN(y) || math.IsInf(y, 0) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		run = append(run, plotter.XY{X: xs[i], Y: y})
	}
	return flush()
}

// logTicks labels a log axis at 1, 2 and 5 times each power of ten, and
// marks the other integer multiples as minor ticks.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for decade := math.Pow10(int(math.Floor(math.Log10(lo)))); decade <= hi; decade *= 10 {
		for m := 1.0; m < 10; m++ {
			v := decade * m
			if v < lo*0.999 || v > hi*1.001 {
				continue
			}
			label := ""
			if m == 1 || m == 2 || m == 5 {
				label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: label})
		}
	}
	return ticks
}

// decadeRange widens [lo, hi] to whole powers of ten, so a log axis always
// spans at least one decade and has labeled ends.
func decadeRange(lo, hi float64) (float64, float64) {
	lo = math.Pow10(int(math.Floor(math.Log10(lo))))
	hi = math.Pow10(int(math.Ceil(math.Log10(hi))))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// legendItem is one entry of a chart's legend, which the page draws in
// HTML below the chart so it never covers the data.
type legendItem struct {
	Label string
	// Color is a CSS hex color.
	Color string
	// Mark is the CSS class of the symbol: "bar", "line", "dot" or
	// "triangle".
	Mark string
}

func hexColor(c color.Color) string {
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return fmt.Sprintf("#%02x%02x%02x", n.R, n.G, n.B)
}

// svgHeader matches what vgsvg writes before the <svg> element.
var svgHeader = regexp.MustCompile(`(?s)^.*?(<svg )`)

// svgFontFallback adds generic fallbacks to the Liberation families that
// vgsvg names.
var svgFontFallback = strings.NewReplacer(
	"font-family:Liberation Sans;", "font-family:'Liberation Sans',Arial,Helvetica,sans-serif;",
	"font-family:Liberation Serif;", "font-family:'Liberation Serif','Times New Roman',serif;",
)

// renderSVG draws onto an SVG canvas of w x h points and returns the <svg>
// element for inlining. gonum/plot panics on some degenerate input, such as
// a log axis without positive values, so a panic becomes an error and the
// report goes on without that chart.
func renderSVG(w, h vg.Length, drawFn func(draw.Canvas) error) (svg template.HTML, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("report: chart drawing panicked: %v", p)
		}
	}()
	c := vgsvg.New(w, h)
	if err := drawFn(draw.New(c)); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", fmt.Errorf("report: encode chart SVG: %w", err)
	}
	out := svgHeader.ReplaceAllString(buf.String(), "$1")
	// vgsvg escapes every text it draws, so the markup is safe to inline.
	return template.HTML(svgFontFallback.Replace(out)), nil
}
