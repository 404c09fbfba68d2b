package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/worker"
	"github.com/megha-ml/megha/worker/gpu"
	"github.com/megha-ml/megha/worker/runtime"
	"github.com/spf13/cobra"
)

type workerFlags struct {
	lease, dataDir, emulate, advertise string
	listen                             string
	logLevel, logFormat                string
	calibrate                          time.Duration
}

func newWorkerCmd(g *globals) *cobra.Command {
	f := &workerFlags{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker agent on this machine (GPUs, heartbeats, tasks)",
		Long: `Run a worker agent: it reports this machine's GPUs (through NVIDIA's NVML, or
emulated with --emulate-gpu), measures its throughput, registers with the
coordinator and keeps a heartbeat stream to the leader, following leader
changes by itself. SIGTERM makes it leave the cluster cleanly.

Without an NVIDIA driver the worker says so and reports no GPUs. Emulated GPUs
come from megha's catalog and are marked emulated everywhere they show.`,
		Example: `  megha worker --coordinator 127.0.0.1:7000 --token $WORKER_TOKEN
  megha worker --emulate-gpu H100x2 --data-dir /var/lib/megha/worker`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWorker(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.lease, "lease", "", "the market lease this machine was started for")
	fl.StringVar(&f.dataDir, "data-dir", "", "where the worker keeps its ID and task files (default ./megha-data/worker)")
	fl.StringVar(&f.emulate, "emulate-gpu", "", "report emulated GPUs from the catalog instead of real ones, e.g. H100x2 (models: "+joinIDs()+")")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to serve task logs to the coordinator on (port 0 picks one)")
	fl.StringVar(&f.advertise, "advertise", "", "host:port where the coordinator and peers reach this worker (default: the --listen address as bound)")
	fl.DurationVar(&f.calibrate, "calibrate", 300*time.Millisecond, "how long the throughput probe runs at start")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	return cmd
}

func joinIDs() string {
	s := ""
	for i, id := range gpu.ModelIDs() {
		if i > 0 {
			s += ", "
		}
		s += id
	}
	return s
}

func runWorker(cmd *cobra.Command, g *globals, f *workerFlags) error {
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.dataDir == "" {
		f.dataDir = filepath.Join("megha-data", "worker")
	}
	abs, err := filepath.Abs(f.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	f.dataDir = abs
	var drv gpu.Driver
	if f.emulate != "" {
		drv, err = gpu.NewEmulated(f.emulate)
		if err != nil {
			return fmt.Errorf("--emulate-gpu: %w", err)
		}
	} else if drv, err = gpu.Open(); err != nil {
		return err
	}
	defer drv.Close()
	inv, err := drv.Inventory()
	if err != nil {
		return fmt.Errorf("GPU inventory: %w", err)
	}
	if inv.Note != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), inv.Note)
	}
	gpus := toProtoGPUs(inv)
	logger.Info("inventory", "source", inv.Source, "gpus", len(gpus), "driver", inv.DriverVersion, "cuda", inv.CUDAVersion)

	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	tp := worker.Calibrate(f.calibrate, inv.Source == "emulated")
	logger.Info("calibrated", "probe", tp.Probe, "samples_per_second", int(tp.SamplesPerSecond), "emulated", tp.Emulated)

	// Orphans of tasks come back to the worker, which reaps them, so that
	// stopping a task leaves no zombies behind.
	if err := runtime.EnableSubreaper(); err != nil {
		logger.Warn("cannot become a child subreaper; a task's orphans will be left to init", "error", err)
	}
	a, err := worker.New(worker.Config{Client: c, Coordinators: []string{g.coordinator}, LeaseID: f.lease, LeaseWait: 30 * time.Second,
		DataDir: f.dataDir, AdvertiseAddr: f.advertise, Listen: f.listen,
		GPUs: gpus, Throughput: tp, Logger: logger,
		GPUStats: func() ([]*meghav1.GPU, error) {
			devs, err := drv.Stats()
			if err != nil {
				return nil, err
			}
			return toProtoGPUs(gpu.Inventory{Devices: devs}), nil
		}})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func toProtoGPUs(inv gpu.Inventory) []*meghav1.GPU {
	out := make([]*meghav1.GPU, 0, len(inv.Devices))
	for _, d := range inv.Devices {
		out = append(out, &meghav1.GPU{
			Uuid: d.UUID, Model: d.Model, Name: d.Name, MemoryBytes: d.MemoryBytes, Emulated: d.Emulated,
			DriverVersion: d.DriverVersion, CudaVersion: d.CUDAVersion, Healthy: d.Healthy,
			HealthReason: d.HealthReason, UtilizationPct: d.UtilizationGPU, TemperatureC: d.TemperatureC,
		})
	}
	return out
}
