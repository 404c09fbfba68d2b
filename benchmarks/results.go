// Package benchmarks measures the coordinator as DESIGN.md's "Benchmarks"
// section asks: every figure is compared with a baseline measured in the
// same run (or, for an absolute bound such as a failover time, with the
// goal itself), repeated, the median reported. Each benchmark writes
// benchmarks/results/<name>.json; RenderTable turns a directory of them
// into benchmarks/RESULTS.md. cmd/meghabench is the driver (`make bench`).
package benchmarks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Better says which direction of the ratio is good.
const (
	Higher = "higher"
	Lower  = "lower"
)

// Result is one benchmark's outcome, as benchmarks/results/<name>.json.
// The first fields are the format DESIGN.md fixes; Samples, BaselineSamples
// and P90 are extras.
type Result struct {
	Name   string  `json:"name"`
	Figure float64 `json:"figure"`
	Unit   string  `json:"unit"`
	// Baseline is nil when the goal is an absolute bound; Ratio is then
	// the figure itself.
	Baseline     *float64 `json:"baseline"`
	BaselineName string   `json:"baseline_name"`
	Ratio        float64  `json:"ratio"`
	Goal         float64  `json:"goal"`
	Better       string   `json:"better"`
	Runs         int      `json:"runs"`
	Machine      Machine  `json:"machine"`
	Date         string   `json:"date"`
	Notes        string   `json:"notes"`

	Samples         []float64 `json:"samples,omitempty"`          // the figure of each run
	BaselineSamples []float64 `json:"baseline_samples,omitempty"` // the baseline of each run
	P90             *float64  `json:"p90,omitempty"`              // of Samples, where it matters
}

// Machine describes where a result was measured.
type Machine struct {
	Cores  int    `json:"cores"`
	MemGiB int    `json:"mem_gib"`
	Go     string `json:"go"`
}

// ThisMachine describes the current machine.
func ThisMachine() Machine {
	return Machine{Cores: runtime.NumCPU(), MemGiB: memGiB(), Go: runtime.Version()}
}

// memGiB reads MemTotal from /proc/meminfo (0 where there is none).
func memGiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0
			}
			return int(math.Round(kb / (1 << 20)))
		}
	}
	return 0
}

// Today is the date format of Result.Date.
func Today() string { return time.Now().Format("2006-01-02") }

// Pass reports whether the result meets its goal.
func (r *Result) Pass() bool {
	if r.Better == Lower {
		return r.Ratio <= r.Goal
	}
	return r.Ratio >= r.Goal
}

// Validate checks that the result is complete enough to publish.
func (r *Result) Validate() error {
	var errs []error
	if r.Name == "" || strings.ContainsAny(r.Name, `/\ `) {
		errs = append(errs, fmt.Errorf("name %q: want a file-name-safe name", r.Name))
	}
	if r.Better != Higher && r.Better != Lower {
		errs = append(errs, fmt.Errorf("better %q: want %q or %q", r.Better, Higher, Lower))
	}
	if r.Unit == "" {
		errs = append(errs, errors.New("unit is empty"))
	}
	if r.Runs <= 0 {
		errs = append(errs, fmt.Errorf("runs %d", r.Runs))
	}
	for name, v := range map[string]float64{"figure": r.Figure, "ratio": r.Ratio, "goal": r.Goal} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s is %v", name, v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("result %s: %w", r.Name, err)
	}
	return nil
}

// Write writes the result to dir/<name>.json (creating dir).
func Write(dir string, r *Result) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.Name+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// ReadDir reads every *.json result in dir, sorted by name.
func ReadDir(dir string) ([]*Result, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Result
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		r := &Result{}
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RenderTable writes the results as markdown: one table, every figure
// beside its goal and whether it meets it.
func RenderTable(w io.Writer, results []*Result) error {
	var sb strings.Builder
	sb.WriteString("# Benchmark results\n\n")
	sb.WriteString("Generated by `make bench` (`meghabench -table benchmarks/results`) from\n")
	sb.WriteString("`benchmarks/results/*.json`; do not edit. Each figure is the median of its runs,\n")
	sb.WriteString("compared with a baseline measured in the same run (ratio = figure / baseline)\n")
	sb.WriteString("or, where the baseline is —, with an absolute bound (ratio = figure).\n\n")
	sb.WriteString("| Benchmark | Figure | Baseline | Ratio | Goal | Result | Runs | Machine | Date | Notes |\n")
	sb.WriteString("|---|---:|---|---:|---|---|---:|---|---|---|\n")
	for _, r := range results {
		baseline := "—"
		if r.Baseline != nil {
			baseline = fmt.Sprintf("%s (%s)", num(*r.Baseline), r.BaselineName)
		}
		goal := "≥ " + num(r.Goal)
		if r.Better == Lower {
			goal = "≤ " + num(r.Goal)
		}
		if r.Baseline == nil {
			goal += " " + r.Unit
		}
		verdict := "**miss**"
		if r.Pass() {
			verdict = "pass"
		}
		machine := fmt.Sprintf("%d cores, %d GiB, %s", r.Machine.Cores, r.Machine.MemGiB, r.Machine.Go)
		fmt.Fprintf(&sb, "| %s | %s %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			cell(r.Name), num(r.Figure), cell(r.Unit), cell(baseline), num(r.Ratio), goal, verdict,
			r.Runs, cell(machine), cell(r.Date), cell(r.Notes))
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// num formats a figure: whole numbers above 100, three significant digits
// below.
func num(v float64) string {
	if math.Abs(v) >= 100 {
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// cell makes text safe inside a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Percentile returns the p-th percentile (0..100) of xs by linear
// interpolation between closest ranks.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 1 {
		return s[0]
	}
	pos := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func ptr(v float64) *float64 { return &v }

// round keeps JSON readable.
func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
