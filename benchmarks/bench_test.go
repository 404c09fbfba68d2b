package benchmarks

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func synthetic() []*Result {
	m := Machine{Cores: 2, MemGiB: 24, Go: "go1.26.8"}
	return []*Result{
		{Name: "coordinator-submit", Figure: 9100, Unit: "jobs/s", Baseline: ptr(15400),
			BaselineName: "raw raft.Apply, 3 nodes, 256 B", Ratio: 0.59, Goal: 0.5, Better: Higher, Runs: 5,
			Machine: m, Date: "2026-11-21", Notes: "64 concurrent clients | piped",
			Samples: []float64{9000, 9100, 9200}, BaselineSamples: []float64{15000, 15400, 15800}},
		{Name: "coordinator-failover", Figure: 1.4, Unit: "s", BaselineName: "none (absolute bound)",
			Ratio: 1.4, Goal: 1.0, Better: Lower, Runs: 10, Machine: m, Date: "2026-11-21",
			Notes: "10 trials", Samples: []float64{1.2, 1.4, 1.6}, P90: ptr(1.58)},
		{Name: "zz-fast", Figure: 0.2, Unit: "s", Ratio: 0.2, Goal: 1, Better: Lower, Runs: 3, Machine: m, Date: "2026-11-21"},
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, r := range synthetic() {
		path, err := Write(dir, r)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(path) != r.Name+".json" {
			t.Fatalf("wrote %s", path)
		}
	}
	// The DESIGN.md fields are all there, with a null baseline for an
	// absolute bound.
	b, err := os.ReadFile(filepath.Join(dir, "coordinator-failover.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "figure", "unit", "baseline", "baseline_name", "ratio", "goal",
		"better", "runs", "machine", "date", "notes"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("field %q missing from %s", k, b)
		}
	}
	if raw["baseline"] != nil {
		t.Errorf("baseline = %v, want null", raw["baseline"])
	}
	mach, _ := raw["machine"].(map[string]any)
	for _, k := range []string{"cores", "mem_gib", "go"} {
		if _, ok := mach[k]; !ok {
			t.Errorf("machine.%s missing", k)
		}
	}

	got, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "coordinator-failover" || got[1].Name != "coordinator-submit" {
		t.Fatalf("read %d results, in order %v", len(got), names(got))
	}
	if got[1].Baseline == nil || *got[1].Baseline != 15400 || got[1].Samples[2] != 9200 {
		t.Fatalf("submit result changed in the round trip: %+v", got[1])
	}
}

func names(rs []*Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestRenderTable(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderTable(&buf, synthetic()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	var rows []string
	seps := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "|---") {
			seps++
		}
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| Benchmark") {
			rows = append(rows, l)
		}
	}
	if seps != 1 {
		t.Fatalf("want one table, found %d:\n%s", seps, out)
	}
	if len(rows) != 3 {
		t.Fatalf("want 3 rows:\n%s", out)
	}
	cols := strings.Count(lines[slicesIndex(lines, "| Benchmark")], "|")
	for _, r := range rows {
		// Escaped pipes are not column separators.
		if n := strings.Count(r, "|") - strings.Count(r, `\|`); n != cols {
			t.Errorf("row has %d separators, header %d: %s", n, cols, r)
		}
	}
	for _, want := range []string{
		"| coordinator-submit | 9100 jobs/s | 15400 (raw raft.Apply, 3 nodes, 256 B) | 0.59 | ≥ 0.5 | pass |",
		"| coordinator-failover | 1.4 s | — | 1.4 | ≤ 1 s | **miss** |",
		"| zz-fast | 0.2 s | — | 0.2 | ≤ 1 s | pass |",
		`64 concurrent clients \| piped`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func slicesIndex(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func TestPassAndValidate(t *testing.T) {
	rs := synthetic()
	if !rs[0].Pass() || rs[1].Pass() || !rs[2].Pass() {
		t.Fatal("pass/miss wrong")
	}
	bad := *rs[0]
	bad.Better = "sideways"
	if err := bad.Validate(); err == nil {
		t.Fatal("bad better accepted")
	}
	if _, err := Write(t.TempDir(), &bad); err == nil {
		t.Fatal("invalid result written")
	}
}

func TestStats(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median %v", m)
	}
	if m := Median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median %v", m)
	}
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p := Percentile(xs, 90); p < 9.09 || p > 9.11 {
		t.Fatalf("p90 %v", p)
	}
	if p := Percentile(xs, 100); p != 10 {
		t.Fatalf("p100 %v", p)
	}
}

func TestNoopCommandSize(t *testing.T) {
	b, err := noopCommand(rawCommandBytes)
	if err != nil || len(b) != rawCommandBytes {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
}
