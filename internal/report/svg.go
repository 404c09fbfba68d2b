package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The chart's geometry, in SVG user units.
const (
	svgWidth, svgHeight = 760, 420
	plotLeft, plotRight = 70, 730 // x of the plot area's edges
	plotTop, plotBottom = 50, 360 // y of the plot area's edges
)

const (
	trainColor    = "#1f77b4"
	valColor      = "#ff7f0e"
	recoveryColor = "#d62728"
)

// WriteSVG writes a self-contained SVG chart of r's loss curve: training
// and validation loss against the round, with a dashed red line at the
// round (or between the rounds) where each recovery's loss was detected. Points whose
// loss is missing or not finite are skipped. The output depends on r
// alone, byte for byte.
func WriteSVG(w io.Writer, r *Report) error {
	var train, val [][2]float64
	for _, p := range r.Loss {
		if p.TrainLoss != nil {
			train = append(train, [2]float64{float64(p.Round), *p.TrainLoss})
		}
		if p.ValLoss != nil {
			val = append(val, [2]float64{float64(p.Round), *p.ValLoss})
		}
	}
	var marks []Recovery
	for _, rc := range r.Recoveries {
		if rc.LostInRound > 0 {
			marks = append(marks, rc)
		}
	}

	// Domains: the rounds shown (and marked), the finite losses.
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, s := range [][][2]float64{train, val} {
		for _, p := range s {
			xlo, xhi = min(xlo, p[0]), max(xhi, p[0])
			ylo, yhi = min(ylo, p[1]), max(yhi, p[1])
		}
	}
	for _, p := range r.Loss {
		xlo, xhi = min(xlo, float64(p.Round)), max(xhi, float64(p.Round))
	}
	for _, m := range marks {
		xlo, xhi = min(xlo, markX(m)), max(xhi, markX(m))
	}
	if math.IsInf(xlo, 0) {
		xlo, xhi = 0, 1
	}
	if xlo == xhi {
		xlo, xhi = max(xlo-1, 0), xhi+1
	}
	if math.IsInf(ylo, 0) {
		ylo, yhi = 0, 1
	}
	if ylo == yhi {
		pad := max(math.Abs(ylo)*0.1, 0.5)
		ylo, yhi = ylo-pad, yhi+pad
	}
	xstep := math.Max(1, math.Round(niceStep(xhi-xlo, 8)))
	ystep := niceStep(yhi-ylo, 5)
	ylo, yhi = math.Floor(ylo/ystep)*ystep, math.Ceil(yhi/ystep)*ystep
	px := func(x float64) float64 { return plotLeft + (x-xlo)/(xhi-xlo)*(plotRight-plotLeft) }
	py := func(y float64) float64 { return plotBottom - (y-ylo)/(yhi-ylo)*(plotBottom-plotTop) }

	var b bytes.Buffer
	title := r.Name
	if title == "" {
		title = r.JobID
	}
	title = "Loss of " + title
	if r.Live {
		title += " (live snapshot, " + r.State + ")"
	}
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">
<title>%s</title>
<desc>%s</desc>
<rect width="%d" height="%d" fill="#ffffff"/>
<text x="%d" y="28" text-anchor="middle" font-size="16" font-weight="bold">%s</text>
`, svgWidth, svgHeight, svgWidth, svgHeight, esc(title), esc(fmt.Sprintf("job %s: training and validation loss by committed round", r.JobID)),
		svgWidth, svgHeight, (plotLeft+plotRight)/2, esc(title))

	// Grid and ticks.
	b.WriteString(`<g class="grid" stroke="#e6e6e6" stroke-width="1">` + "\n")
	ydec := decimals(ystep)
	var labels strings.Builder
	for i := 0; ; i++ {
		y := ylo + float64(i)*ystep
		if y > yhi+ystep/2 {
			break
		}
		if math.Abs(y) < ystep*1e-6 {
			y = 0 // not -0, nor 1e-17
		}
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", f1(plotLeft), f1(py(y)), f1(plotRight), f1(py(y)))
		fmt.Fprintf(&labels, `<text x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n",
			f1(plotLeft-8), f1(py(y)), strconv.FormatFloat(y, 'f', ydec, 64))
	}
	for x := math.Ceil(xlo/xstep) * xstep; x <= xhi+1e-9; x += xstep {
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", f1(px(x)), f1(plotTop), f1(px(x)), f1(plotBottom))
		fmt.Fprintf(&labels, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1(px(x)), f1(plotBottom+18), strconv.FormatFloat(x, 'f', 0, 64))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<g class="axes" stroke="#333333" stroke-width="1" fill="none">
<line x1="%d" y1="%d" x2="%d" y2="%d"/>
<line x1="%d" y1="%d" x2="%d" y2="%d"/>
</g>
`, plotLeft, plotBottom, plotRight, plotBottom, plotLeft, plotTop, plotLeft, plotBottom)
	b.WriteString(`<g class="tick-labels" fill="#333333">` + "\n" + labels.String() + "</g>\n")
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">round</text>
<text x="18" y="%d" text-anchor="middle" transform="rotate(-90 18 %d)">loss</text>
`, (plotLeft+plotRight)/2, plotBottom+42, (plotTop+plotBottom)/2, (plotTop+plotBottom)/2)

	// Recovery markers, under the curves.
	if len(marks) > 0 {
		b.WriteString(`<g class="recoveries">` + "\n")
		for _, m := range marks {
			x := f1(px(markX(m)))
			what := fmt.Sprintf("rank %d lost %s", m.Rank, lostWhen(m))
			if m.RejoinedRound > 0 {
				what += fmt.Sprintf(", rejoined in round %d", m.RejoinedRound)
			}
			fmt.Fprintf(&b, `<line class="recovery" x1="%s" y1="%d" x2="%s" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"><title>%s</title></line>`+"\n",
				x, plotTop, x, plotBottom, recoveryColor, esc(what))
			fmt.Fprintf(&b, `<text x="%s" y="%d" fill="%s" font-size="10" text-anchor="start">rank %d lost</text>`+"\n",
				f1(px(markX(m))+3), plotTop+12, recoveryColor, m.Rank)
		}
		b.WriteString("</g>\n")
	}

	// The curves: a single point is a dot, since a one-point line shows nothing.
	for _, s := range []struct {
		class, color string
		pts          [][2]float64
	}{{"train", trainColor, train}, {"val", valColor, val}} {
		if len(s.pts) == 0 {
			continue
		}
		pts := make([]string, len(s.pts))
		for i, p := range s.pts {
			pts[i] = f1(px(p[0])) + "," + f1(py(p[1]))
		}
		fmt.Fprintf(&b, `<polyline class="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" points="%s"/>`+"\n",
			s.class, s.color, strings.Join(pts, " "))
		if len(s.pts) == 1 {
			fmt.Fprintf(&b, `<circle class="%s" cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", s.class, f1(px(s.pts[0][0])), f1(py(s.pts[0][1])), s.color)
		}
	}
	if len(train) == 0 && len(val) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#777777" font-size="14">no rounds committed yet</text>`+"\n",
			(plotLeft+plotRight)/2, (plotTop+plotBottom)/2)
	}

	// Legend, top right of the plot.
	var entries []struct{ label, color, dash string }
	if len(train) > 0 {
		entries = append(entries, struct{ label, color, dash string }{"train", trainColor, ""})
	}
	if len(val) > 0 {
		entries = append(entries, struct{ label, color, dash string }{"validation", valColor, ""})
	}
	if len(marks) > 0 {
		entries = append(entries, struct{ label, color, dash string }{"worker lost", recoveryColor, "6 4"})
	}
	if len(entries) > 0 {
		x0, y0 := plotRight-130, plotTop+8
		fmt.Fprintf(&b, `<g class="legend">`+"\n"+`<rect x="%d" y="%d" width="122" height="%d" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>`+"\n",
			x0, y0, 8+18*len(entries))
		for i, e := range entries {
			y := y0 + 16 + 18*i
			dash := ""
			if e.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, e.dash)
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", x0+8, y-4, x0+32, y-4, e.color, dash)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x0+38, y, e.label)
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// markX is where a recovery's marker stands: on the round it was lost
// during, or halfway between the rounds it was lost between.
func markX(rc Recovery) float64 {
	if rc.LostMidRound {
		return float64(rc.LostInRound)
	}
	return float64(rc.LostInRound) - 0.5
}

// niceStep is a tick spacing of 1, 2 or 5 × 10^k that cuts span into about
// n intervals.
func niceStep(span float64, n int) float64 {
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch norm := raw / mag; {
	case norm < 1.5:
		return mag
	case norm < 3:
		return 2 * mag
	case norm < 7:
		return 5 * mag
	}
	return 10 * mag
}

// decimals is how many decimal places show a multiple of step exactly.
func decimals(step float64) int {
	return max(0, int(-math.Floor(math.Log10(step)+1e-9)))
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
