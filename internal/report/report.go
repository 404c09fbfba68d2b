// Package report builds the end-of-job report of a training job from what
// the coordinator recorded: the loss curve, totals, GPU-hours, spend,
// recoveries from lost workers and checkpoints. It is pure: Build takes the
// records and the time and returns a value; WriteText, WriteJSON and
// WriteSVG render it to an io.Writer.
//
// The report says what was measured and what is only estimated. Measured:
// every time, loss, token and byte count comes from the coordinator's
// records. Derived: GPU-hours (lease or task intervals × GPUs), recovery
// durations (differences of recorded times). Attributed by GPU model and
// time, since no record links a task to its lease: which lease a lost
// worker held and which lease replaced it. Estimated: the work a lost rank
// threw away. Not recorded at all (null): when a replacement finished
// restoring its checkpoint.
package report

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/internal/jobstate"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Report is a job's end-of-job report (or, for a job still running, a live
// snapshot). Its JSON form is a stable interface for scripts: keys are
// snake_case, every key is always present, and a value that is unknown or
// not recorded is null rather than absent.
type Report struct {
	JobID     string `json:"job_id"`
	Name      string `json:"name"`
	Tenant    string `json:"tenant"`
	State     string `json:"state"`     // as `megha jobs` prints it: running, succeeded, ...
	Live      bool   `json:"live"`      // the job has not finished: the figures are a snapshot
	Model     string `json:"model"`     // the built-in model, or the user's command
	Dataset   string `json:"dataset"`   // the built-in dataset, or the data URI
	Algorithm string `json:"algorithm"` // diloco | ddp
	// GeneratedAt is the time the report was built: the end of every
	// interval still open (a running job's duration, an active lease).
	GeneratedAt     time.Time  `json:"generated_at"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	DurationSeconds *float64   `json:"duration_seconds"` // started → finished (or → generated_at while live)
	LastError       string     `json:"last_error"`

	Loss        []LossPoint  `json:"loss"` // every committed round, oldest first
	Totals      Totals       `json:"totals"`
	GPUHours    GPUHours     `json:"gpu_hours"`
	Spend       Spend        `json:"spend"`
	Leases      []Lease      `json:"leases"`
	Recoveries  []Recovery   `json:"recoveries"`
	Checkpoints []Checkpoint `json:"checkpoints"` // those still retained, oldest first
	// FinalCheckpoint is the newest retained checkpoint: the one a job
	// resumed (or a model exported) from would use. Null if none.
	FinalCheckpoint *Checkpoint `json:"final_checkpoint"`
	// Notes say, in words, which figures are estimated or not recorded.
	Notes []string `json:"notes"`
}

// LossPoint is one committed round on the loss curve. A loss that was not
// measured, or is not finite, is null.
type LossPoint struct {
	Round       uint64     `json:"round"`
	TrainLoss   *float64   `json:"train_loss"`
	ValLoss     *float64   `json:"val_loss"`
	Tokens      uint64     `json:"tokens"`
	Members     int        `json:"members"`
	CommittedAt *time.Time `json:"committed_at"`
}

// Totals are the job's sums over every committed round.
type Totals struct {
	Rounds          uint64 `json:"rounds"`
	Tokens          uint64 `json:"tokens"`
	BytesSent       int64  `json:"bytes_sent"`     // all-reduce payload, all workers
	BytesReceived   int64  `json:"bytes_received"` // all-reduce payload, all workers
	AbortedAttempts uint64 `json:"aborted_attempts"`
	Tasks           int    `json:"tasks"`      // tasks ever placed, replacements included
	LostTasks       int    `json:"lost_tasks"` // tasks lost with their worker
}

// GPUHours is the GPU time a job held, by GPU model.
type GPUHours struct {
	// Source is "leases" (rented time: each lease from its creation to its
	// close, or to generated_at while open, × its GPUs) when the job has
	// leases, "tasks" (each task from its assignment to its end × the
	// spec's GPUs per worker) when it ran on workers it did not lease, or
	// "" when it has held no GPU yet.
	Source string       `json:"source"`
	Total  float64      `json:"total"`
	Models []ModelHours `json:"models"` // by model name, then real before emulated
}

// ModelHours is the GPU time held on one GPU model.
type ModelHours struct {
	GPUModel string  `json:"gpu_model"` // "unknown" when a task never reported its GPU
	Emulated bool    `json:"emulated"`  // emulated GPUs (--emulate-gpu, the embedded market)
	Count    int     `json:"count"`     // leases (or tasks) summed
	GPUs     uint32  `json:"gpus"`      // GPUs in those leases (or tasks), summed
	Hours    float64 `json:"hours"`
	Open     bool    `json:"open"` // some interval is still open and counted to generated_at
}

// Spend is what the job has paid, against its budget.
type Spend struct {
	SpentMicros  int64 `json:"spent_micros"`  // USD millionths, as the coordinator books it
	BudgetMicros int64 `json:"budget_micros"` // USD millionths; 0 means no cap
}

// Lease is one market lease held for the job and what it cost.
type Lease struct {
	ID                    string     `json:"id"`
	Provider              string     `json:"provider"`
	Region                string     `json:"region"`
	GPUModel              string     `json:"gpu_model"`
	GPUs                  uint32     `json:"gpus"`
	Emulated              bool       `json:"emulated"`
	PricePerGPUHourMicros int64      `json:"price_per_gpu_hour_micros"`
	SpentMicros           int64      `json:"spent_micros"`
	State                 string     `json:"state"` // active | closed
	CloseReason           string     `json:"close_reason"`
	CreatedAt             *time.Time `json:"created_at"`
	ClosedAt              *time.Time `json:"closed_at"`
	Hours                 float64    `json:"hours"` // open → closed (or → generated_at) × GPUs
}

// Checkpoint is a retained checkpoint.
type Checkpoint struct {
	Round       uint64     `json:"round"`
	Step        uint64     `json:"step"`
	Tokens      uint64     `json:"tokens"`
	Bytes       int64      `json:"bytes"`
	CommittedAt *time.Time `json:"committed_at"`
}

// Build assembles the report of job from its tasks and leases (either may
// be empty: a job that never ran, a caller not allowed to list leases).
// now ends every interval still open; nothing else reads the clock.
func Build(job *meghav1.Job, tasks []*meghav1.Task, leases []*meghav1.Lease, now time.Time) *Report {
	now = now.UTC()
	st, spec, tr := job.GetStatus(), job.GetSpec(), job.GetStatus().GetTrain()
	r := &Report{
		JobID:       job.GetId(),
		Name:        spec.GetName(),
		Tenant:      job.GetTenant(),
		State:       jobstate.Name(st.GetState()),
		Live:        !jobstate.Terminal(st.GetState()),
		Model:       modelOf(spec),
		Dataset:     cmp.Or(spec.GetData().GetDataset(), spec.GetData().GetUri()),
		Algorithm:   cmp.Or(tr.GetAlgorithm(), algorithmOf(spec)),
		GeneratedAt: now,
		StartedAt:   timeOf(st.GetStartedAt()),
		FinishedAt:  timeOf(st.GetFinishedAt()),
		LastError:   st.GetLastError(),
		Spend:       Spend{SpentMicros: st.GetSpendMicros(), BudgetMicros: spec.GetBudget().GetMaxSpendMicros()},
		Loss:        []LossPoint{},
		Leases:      []Lease{},
		Recoveries:  []Recovery{},
		Checkpoints: []Checkpoint{},
		Notes:       []string{},
	}
	if r.StartedAt != nil {
		end := now
		if r.FinishedAt != nil {
			end = *r.FinishedAt
		}
		r.DurationSeconds = seconds(end.Sub(*r.StartedAt))
	}
	if r.Live {
		r.Notes = append(r.Notes, "live snapshot: the job is "+r.State+"; open intervals are counted to generated_at")
	}

	for _, rec := range tr.GetRounds() {
		p := LossPoint{Round: rec.Round, TrainLoss: finite(rec.TrainLoss), Tokens: rec.Tokens,
			Members: len(rec.Members), CommittedAt: timeOf(rec.CommittedAt)}
		if rec.HasVal {
			p.ValLoss = finite(rec.ValLoss)
		}
		r.Loss = append(r.Loss, p)
	}
	r.Totals = Totals{Rounds: tr.GetCommitted(), Tokens: tr.GetTokens(), BytesSent: tr.GetBytesSent(),
		BytesReceived: tr.GetBytesReceived(), AbortedAttempts: tr.GetAbortedAttempts(), Tasks: len(tasks)}
	for _, t := range tasks {
		if t.State == meghav1.TaskState_TASK_STATE_LOST {
			r.Totals.LostTasks++
		}
	}

	r.GPUHours = gpuHours(spec, tr, tasks, leases, now)
	switch r.GPUHours.Source {
	case "leases":
		r.Notes = append(r.Notes, "gpu_hours are rented time: each lease from its creation to its close, × its GPUs")
	case "tasks":
		r.Notes = append(r.Notes, "gpu_hours are held time: each task from its assignment to its end, × the spec's GPUs per worker (the job has no leases)")
	}
	for _, l := range sortedLeases(leases) {
		r.Leases = append(r.Leases, Lease{
			ID: l.Id, Provider: cmp.Or(l.ProviderName, l.Provider), Region: l.Region, GPUModel: l.GpuModel, GPUs: l.Gpus,
			Emulated: l.Emulated, PricePerGPUHourMicros: l.PricePerGpuHourMicros, SpentMicros: l.SpentMicros,
			State:       strings.ToLower(strings.TrimPrefix(l.State.String(), "LEASE_STATE_")),
			CloseReason: l.CloseReason, CreatedAt: timeOf(l.CreatedAt), ClosedAt: timeOf(l.ClosedAt),
			Hours: leaseHours(l, now),
		})
	}

	r.Recoveries = recoveries(spec, tr, tasks, leases)
	if len(r.Recoveries) > 0 {
		r.Notes = append(r.Notes,
			"restored_at is null: the coordinator does not record when a replacement finished restoring its checkpoint",
			"work_lost_*_estimate is an estimate, not a measurement: the lost rank's steps × batch size (and tokens) in its last committed round, at most one round's worth")
		if len(leases) > 0 {
			r.Notes = append(r.Notes, "lost_lease_id and lease_id are attributed by GPU model and time (no record links a task to its lease): the lease of the lost task's GPU model that closed last before the detection, and the first lease created after it closed")
		}
	}

	for _, c := range tr.GetCheckpoints() {
		r.Checkpoints = append(r.Checkpoints, Checkpoint{Round: c.Round, Step: c.Step, Tokens: c.Tokens, Bytes: c.Bytes,
			CommittedAt: timeOf(c.CommittedAt)})
	}
	if n := len(r.Checkpoints); n > 0 {
		final := r.Checkpoints[n-1]
		r.FinalCheckpoint = &final
	}
	return r
}

// gpuHours sums GPU time by model: from leases when the job has any,
// otherwise from its tasks, attributed to the GPU model their round
// reports name.
func gpuHours(spec *meghav1.JobSpec, tr *meghav1.TrainStatus, tasks []*meghav1.Task, leases []*meghav1.Lease, now time.Time) GPUHours {
	type key struct {
		model    string
		emulated bool
	}
	sums := map[key]*ModelHours{}
	add := func(k key, gpus uint32, hours float64, open bool) {
		m := sums[k]
		if m == nil {
			m = &ModelHours{GPUModel: k.model, Emulated: k.emulated}
			sums[k] = m
		}
		m.Count++
		m.GPUs += gpus
		m.Hours += hours
		m.Open = m.Open || open
	}
	var out GPUHours
	switch {
	case len(leases) > 0:
		out.Source = "leases"
		for _, l := range leases {
			if l.CreatedAt == nil {
				continue
			}
			add(key{cmp.Or(l.GpuModel, "unknown"), l.Emulated}, l.Gpus, leaseHours(l, now), l.ClosedAt == nil)
		}
	case len(tasks) > 0:
		out.Source = "tasks"
		gpus := max(spec.GetResources().GetGpusPerWorker(), 1)
		models := memberModels(tr)
		for _, t := range tasks {
			start := t.AssignedAt
			if start == nil {
				start = t.StartedAt
			}
			if start == nil {
				continue
			}
			end, open := now, liveTask(t.State)
			if !open {
				if t.FinishedAt == nil {
					continue // ended, but when is not recorded
				}
				end = t.FinishedAt.AsTime()
			}
			m, ok := models[t.Id]
			if !ok {
				m.model = "unknown"
			}
			add(key{m.model, m.emulated}, gpus, hours(end.Sub(start.AsTime()))*float64(gpus), open)
		}
	}
	out.Models = []ModelHours{}
	for _, m := range sums {
		out.Models = append(out.Models, *m)
	}
	slices.SortFunc(out.Models, func(a, b ModelHours) int {
		if c := strings.Compare(a.GPUModel, b.GPUModel); c != 0 {
			return c
		}
		if a.Emulated == b.Emulated {
			return 0
		}
		if a.Emulated {
			return 1
		}
		return -1
	})
	for _, m := range out.Models { // in order, so that the sum is the same every time
		out.Total += m.Hours
	}
	return out
}

type gpuModel struct {
	model    string
	emulated bool
}

// memberModels maps each task that reported a round to its GPU model.
func memberModels(tr *meghav1.TrainStatus) map[string]gpuModel {
	out := map[string]gpuModel{}
	for _, rec := range tr.GetRounds() {
		for _, m := range rec.Members {
			if m.GpuModel != "" {
				out[m.TaskId] = gpuModel{m.GpuModel, m.Emulated}
			}
		}
	}
	return out
}

// sortedLeases orders leases by creation, then ID.
func sortedLeases(leases []*meghav1.Lease) []*meghav1.Lease {
	out := slices.Clone(leases)
	slices.SortStableFunc(out, func(a, b *meghav1.Lease) int {
		return cmp.Or(compareTS(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out
}

// leaseHours is a lease's GPU-hours: open → closed (or now) × GPUs.
func leaseHours(l *meghav1.Lease, now time.Time) float64 {
	if l.CreatedAt == nil {
		return 0
	}
	end := now
	if l.ClosedAt != nil {
		end = l.ClosedAt.AsTime()
	}
	return hours(end.Sub(l.CreatedAt.AsTime())) * float64(l.Gpus)
}

func hours(d time.Duration) float64 { return max(d, 0).Hours() }

// compareTS orders timestamps, nil last.
func compareTS(a, b *timestamppb.Timestamp) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return a.AsTime().Compare(b.AsTime())
}

func liveTask(s meghav1.TaskState) bool {
	return s == meghav1.TaskState_TASK_STATE_ASSIGNED || s == meghav1.TaskState_TASK_STATE_RUNNING
}

func timeOf(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

func seconds(d time.Duration) *float64 {
	s := math.Round(d.Seconds()*1000) / 1000
	return &s
}

// finite is v, or nil when it is NaN or infinite (JSON has no such numbers).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func modelOf(spec *meghav1.JobSpec) string {
	if b := spec.GetModel().GetBuiltin(); b != "" {
		return b
	}
	s := strings.Join(spec.GetModel().GetCommand(), " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func algorithmOf(spec *meghav1.JobSpec) string {
	if spec.GetKind() != meghav1.JobKind_JOB_KIND_TRAIN {
		return ""
	}
	switch spec.GetSync().GetAlgorithm() {
	case meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP:
		return "ddp"
	}
	return "diloco"
}
