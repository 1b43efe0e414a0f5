package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// The plot: one panel per query type, latency (ms, log scale) against
// percentile on the 1/(1−p) scale HdrHistogram plots use, one line per
// (rate, target); Kiln solid, the floor dashed in the same colour.
const (
	panelW           = 620
	plotL, plotR     = 70, 40 // margins of the plot area inside a panel
	plotT, plotH     = 50, 330
	axisRoom         = 50 // below the plot: tick labels and the axis title
	svgTop           = 40 // room for the title
	svgFoot          = 30 // room for the footnote
	xStep            = 0.01
	minXDecades      = 2
	maxXDecades      = 6
	legendLineHeight = 16
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

// xLabels name the decades of the x axis.
var xLabels = []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"}

// writeSVG writes latency.svg into dir.
func (r *Report) writeSVG(dir string) error {
	return os.WriteFile(filepath.Join(dir, "latency.svg"), r.svg(), 0o644)
}

// svg draws the open-loop steps that have recorded latencies.
func (r *Report) svg() []byte {
	var queries []string
	byQuery := map[string][]*Step{}
	for _, s := range r.Steps {
		if s.Mode != "open" || s.hist == nil || s.hist.TotalCount() == 0 {
			continue
		}
		if _, ok := byQuery[s.Query]; !ok {
			queries = append(queries, s.Query)
		}
		byQuery[s.Query] = append(byQuery[s.Query], s)
	}
	n := max(len(queries), 1)
	rows := 0
	for _, q := range queries {
		rows = max(rows, len(byQuery[q]))
	}
	panelH := plotT + plotH + axisRoom + rows*legendLineHeight + 10
	w, h := n*panelW, svgTop+panelH+svgFoot
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	title := fmt.Sprintf("Kiln RW1 latency by percentile — scale %g, %s, %d CPUs", r.Config.Scale, r.Config.Transport, r.Machine.CPUs)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold" text-anchor="middle">%s</text>`+"\n", w/2, esc(title))
	if len(queries) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no measurements</text>`+"\n", w/2, h/2)
	}
	for i, q := range queries {
		drawPanel(&b, float64(i*panelW), svgTop, q, byQuery[q])
	}
	foot := "Open loop at a fixed rate; latency from each request's scheduled time (corrected for coordinated omission). Solid: Kiln. Dashed: the floor (the store's raw multi-get of the same rows)."
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#444" text-anchor="middle">%s</text>`+"\n", w/2, h-10, esc(foot))
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// drawPanel draws one query type's panel with its top-left corner at
// (ox, oy).
func drawPanel(b *bytes.Buffer, ox, oy float64, query string, steps []*Step) {
	// Axis ranges: x in decades of 1/(1−p), y in decades of ms.
	xMax := 0.0
	yLo, yHi := math.Inf(1), math.Inf(-1)
	for _, s := range steps {
		xMax = max(xMax, math.Log10(float64(s.hist.TotalCount())))
		yLo = min(yLo, float64(max(s.hist.Min(), histMinMicros))/1000)
		yHi = max(yHi, float64(s.hist.Max())/1000)
	}
	xDec := int(math.Ceil(xMax))
	xDec = max(minXDecades, min(xDec, maxXDecades))
	yMin, yMax := math.Floor(math.Log10(yLo)), math.Ceil(math.Log10(yHi))
	if yMax <= yMin {
		yMax = yMin + 1
	}
	left, top := ox+plotL, oy+plotT
	pw, ph := float64(panelW-plotL-plotR), float64(plotH)
	px := func(x float64) float64 { return left + pw*x/float64(xDec) }
	py := func(ms float64) float64 { return top + ph*(yMax-math.Log10(ms))/(yMax-yMin) }

	head := query
	if len(steps) > 0 {
		head = fmt.Sprintf("%s — service %s, %d feature values a request", query, steps[0].Service, steps[0].ValuesPerRequest)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`+"\n", left+pw/2, oy+plotT-18, esc(head))

	// Grid and axes.
	fmt.Fprintf(b, `<g stroke="#ddd" stroke-width="1">`+"\n")
	for d := yMin; d < yMax; d++ {
		for _, m := range []float64{2, 5} {
			y := py(m * math.Pow(10, d))
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", left, y, left+pw, y)
		}
	}
	for d := yMin; d <= yMax; d++ {
		y := py(math.Pow(10, d))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`+"\n", left, y, left+pw, y)
	}
	for d := 0; d <= xDec; d++ {
		x := px(float64(d))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`+"\n", x, top, x, top+ph)
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	for d := yMin; d <= yMax; d++ {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, py(math.Pow(10, d)), msLabel(math.Pow(10, d)))
		if yMax-yMin <= 3 && d < yMax { // few decades: label 2 and 5 too
			for _, m := range []float64{2, 5} {
				v := m * math.Pow(10, d)
				fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle" font-size="10" fill="#777">%s</text>`+"\n", left-6, py(v), msLabel(v))
			}
		}
	}
	for d := 0; d <= xDec; d++ {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(float64(d)), top+ph+16, xLabels[d])
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">percentile (1/(1−p) scale)</text>`+"\n", left+pw/2, top+ph+36)
	fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`+"\n", ox+18, top+ph/2)

	// Lines: one colour per offered rate, in the order the steps ran.
	colour := map[float64]string{}
	for _, s := range steps {
		if _, ok := colour[s.Offered]; !ok {
			colour[s.Offered] = palette[len(colour)%len(palette)]
		}
	}
	clip := "clip-" + strings.ToLower(query)
	fmt.Fprintf(b, `<clipPath id="%s"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></clipPath>`+"\n", esc(clip), left, top, pw, ph)
	fmt.Fprintf(b, `<g fill="none" stroke-linejoin="round" clip-path="url(#%s)">`+"\n", esc(clip))
	for _, s := range steps {
		var pts strings.Builder
		end := math.Min(math.Log10(float64(s.hist.TotalCount())), float64(xDec))
		for x := 0.0; ; x += xStep {
			x = math.Min(x, end)
			v := s.hist.Min() // ValueAtPercentile(0) is the histogram's floor, not the least value
			if x > 0 {
				v = s.hist.ValueAtPercentile(100 * (1 - math.Pow(10, -x)))
			}
			ms := float64(max(v, histMinMicros)) / 1000
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(x), py(ms))
			if x >= end {
				break
			}
		}
		dash, width := "", 2.0
		if s.Target == targetFloor {
			dash, width = ` stroke-dasharray="6 4"`, 1.5
		}
		fmt.Fprintf(b, `<polyline stroke="%s" stroke-width="%.1f"%s points="%s"/>`+"\n", colour[s.Offered], width, dash, strings.TrimSpace(pts.String()))
	}
	b.WriteString("</g>\n")

	// Legend, under the axis title, one line per step.
	lx, ly := left, top+ph+axisRoom
	for i, s := range steps {
		y := ly + float64(i*legendLineHeight) + legendLineHeight/2
		dash := ""
		if s.Target == targetFloor {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, y, lx+30, y, colour[s.Offered], dash)
		label := fmt.Sprintf("%s at %g/s: p50 %.3f, p99 %.3f, p99.9 %.3f, max %.3f ms", s.Target, s.Offered, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", lx+38, y, esc(label))
	}
}

// msLabel formats a tick of milliseconds (1, 2 or 5 times a power of ten).
func msLabel(ms float64) string {
	if ms >= 1 {
		return fmt.Sprintf("%.0f", ms)
	}
	return strings.TrimRight(fmt.Sprintf("%.3f", ms), "0")
}

func esc(s string) string { return html.EscapeString(s) }
