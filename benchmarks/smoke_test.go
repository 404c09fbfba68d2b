//go:build unix

package benchmarks

import (
	"context"
	"testing"
	"time"
)

// TestQuickBenchmarks runs every benchmark in -quick mode: it checks that
// they run and produce publishable results, not what the figures are.
func TestQuickBenchmarks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts coordinator clusters")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cfg := Config{Quick: true, Logf: t.Logf}
	arChildArgs = []string{"-test.run=^TestAllReduceMemberProcess$"}
	dir := t.TempDir()
	all := map[string]func(context.Context, Config) (*Result, error){
		"coordinator-submit": RunSubmit, "coordinator-failover": RunFailover, "worker-heartbeats": RunHeartbeats,
		"collective-allreduce": RunAllReduce,
	}
	for name, run := range TrainStepBenchmarks() {
		all[name] = run
	}
	for name, run := range DiLoCoBenchmarks() {
		all[name] = run
	}
	for name, run := range SelectionBenchmarks() {
		all[name] = run
	}
	for name, run := range CheckpointBenchmarks() {
		all[name] = run
	}
	for name, run := range all {
		r, err := run(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Name != name || r.Figure <= 0 || r.Runs <= 0 {
			t.Fatalf("%s: %+v", name, r)
		}
		if _, err := Write(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := ReadDir(dir)
	if err != nil || len(rs) != len(all) {
		t.Fatalf("%d results, %v", len(rs), err)
	}
}

// TestAllReduceMemberProcess is a member process of the all-reduce
// benchmark when RunAllReduce starts this test binary as one; otherwise it
// does nothing.
func TestAllReduceMemberProcess(t *testing.T) { MaybeRunChild() }
