package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIReport reports on a job that cannot run (no workers): a live
// snapshot with no rounds, written to --out; and on a job that does not
// exist.
func TestCLIReport(t *testing.T) {
	addr := startCoordinator(t)
	const tenant = "acme-token-0123456789"
	r := run(t, addr, tenant, "submit", writeFile(t, "job.yaml", goodSpec))
	if r.code != 0 {
		t.Fatalf("submit: %+v", r)
	}
	id := strings.Fields(r.stdout)[2]

	dir := filepath.Join(t.TempDir(), "reports", "cli-job")
	r = run(t, addr, tenant, "report", id, "--out", dir)
	if r.code != 0 {
		t.Fatalf("report: %+v", r)
	}
	for _, want := range []string{"Report of " + id + " (cli-job)", "Live snapshot", "State:        pending",
		"Loss: no rounds committed yet.", "Wrote " + filepath.Join(dir, "report.json") + " and " + filepath.Join(dir, "loss.svg")} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report output lacks %q:\n%s", want, r.stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil || rep["job_id"] != id || rep["live"] != true || len(rep["loss"].([]any)) != 0 {
		t.Errorf("report.json: %v\n%s", err, b)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "loss.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{})); err != nil || !strings.Contains(string(svg), "no rounds committed yet") {
		t.Errorf("loss.svg: %v\n%s", err, svg)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// -o json: stdout is the report alone; where the files went is on stderr.
	r = run(t, addr, tenant, "report", "-o", "json", id, "--out", dir)
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || rep["job_id"] != id ||
		!strings.Contains(r.stderr, "Wrote ") {
		t.Errorf("report -o json: %v %+v", err, r)
	}

	r = run(t, addr, tenant, "report", "nosuchjob", "--out", filepath.Join(t.TempDir(), "x"))
	if r.code == 0 || !strings.Contains(r.stderr, "not found") || !strings.Contains(r.stderr, "megha jobs") {
		t.Errorf("report of an unknown job: %+v", r)
	}
}
