//go:build unix

// Command meghabench runs megha's benchmarks and renders their results.
//
//	meghabench -out benchmarks/results              run every benchmark
//	meghabench -out DIR -only coordinator-submit    run one
//	meghabench -quick -out DIR                      fewer, shorter runs (smoke test)
//	meghabench -table benchmarks/results > benchmarks/RESULTS.md
//
// Progress goes to stderr; each result to DIR/<name>.json. A benchmark
// that misses its goal is reported, not an error; one that cannot run is.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/megha-ml/megha/benchmarks"
)

var all = map[string]func(context.Context, benchmarks.Config) (*benchmarks.Result, error){
	"coordinator-submit":   benchmarks.RunSubmit,
	"coordinator-failover": benchmarks.RunFailover,
	"worker-heartbeats":    benchmarks.RunHeartbeats,
	"collective-allreduce": benchmarks.RunAllReduce,
}

func init() {
	for name, run := range benchmarks.TrainStepBenchmarks() { // train-step-<model>
		all[name] = run
	}
	for name, run := range benchmarks.DiLoCoBenchmarks() { // diloco-{bytes,loss}-h<H>-<fp32|int8>
		all[name] = run
	}
	for name, run := range benchmarks.SelectionBenchmarks() { // selection-{quality,scale}
		all[name] = run
	}
	for name, run := range benchmarks.CheckpointBenchmarks() { // checkpoint-{upload,download,stall}
		all[name] = run
	}
}

func main() {
	benchmarks.MaybeRunChild() // a member process of a multi-process benchmark
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meghabench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out      = flag.String("out", "benchmarks/results", "directory to write <name>.json results to")
		table    = flag.String("table", "", "render the results in this directory as a markdown table on stdout, and run nothing")
		only     = flag.String("only", "", "run only these benchmarks (comma-separated): "+strings.Join(names(), ", "))
		quick    = flag.Bool("quick", false, "fewer and shorter runs: a smoke test, not a measurement")
		bin      = flag.String("bin", "", "megha binary for process benchmarks (default: build ./cmd/megha)")
		cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of each measured run of coordinator-submit (and of each collective-allreduce member) into this directory")
		deadline = flag.Duration("timeout", 20*time.Minute, "give up after this long")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *table != "" {
		results, err := benchmarks.ReadDir(*table)
		if err != nil {
			return err
		}
		if len(results) == 0 {
			return fmt.Errorf("no results in %s; run meghabench -out %s first", *table, *table)
		}
		return benchmarks.RenderTable(os.Stdout, results)
	}

	selected := names()
	if *only != "" {
		selected = nil
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			if _, ok := all[n]; !ok {
				return fmt.Errorf("-only %q: no such benchmark; have %s", n, strings.Join(names(), ", "))
			}
			selected = append(selected, n)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()

	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	cfg := benchmarks.Config{Quick: *quick, Logf: logf, CPUProfileDir: *cpuprof, Bin: *bin}
	var errs []error
	for _, name := range selected {
		logf("%s: running", name)
		start := time.Now()
		r, err := all[name](ctx, cfg)
		if err != nil {
			logf("%s: FAILED: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		path, err := benchmarks.Write(*out, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		verdict := "MISS"
		if r.Pass() {
			verdict = "pass"
		}
		cmp := ">="
		if r.Better == benchmarks.Lower {
			cmp = "<="
		}
		logf("%s: %v %s, ratio %v (goal %s %v): %s; %s in %v", name, r.Figure, r.Unit, r.Ratio, cmp, r.Goal,
			verdict, path, time.Since(start).Round(time.Second))
	}
	return errors.Join(errs...)
}

func names() []string {
	var out []string
	for n := range all {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
