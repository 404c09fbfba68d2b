package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func at(sec float64) *timestamppb.Timestamp {
	return timestamppb.New(t0.Add(time.Duration(sec * float64(time.Second))))
}

// recoveredJob is a finished two-rank job whose rank 1 (task t1, an
// emulated RTX4090 on w-4090) is lost at t0+25s during round 3; round 3
// commits without it, a lease for an emulated A100 opens at +26s, the
// replacement t1b is placed at +27s and joins round 4 (started at +30s).
// Rounds take 10 s each; six are committed.
func recoveredJob() (*meghav1.Job, []*meghav1.Task, []*meghav1.Lease) {
	member := func(task, worker, gpu string, emulated bool, loss float64) *meghav1.MemberRound {
		return &meghav1.MemberRound{TaskId: task, WorkerId: worker, Steps: 15, Tokens: 15 * 16 * 64, Loss: loss,
			GpuModel: gpu, Emulated: emulated, BytesSent: 1000, BytesReceived: 1000}
	}
	var rounds []*meghav1.RoundRecord
	for r := uint64(1); r <= 6; r++ {
		loss := 5.0 - 0.5*float64(r)
		rec := &meghav1.RoundRecord{Round: r, TrainLoss: loss, ValLoss: loss + 0.2, HasVal: r%2 == 0,
			StartedAt: at(float64(10 * (r - 1))), CommittedAt: at(float64(10 * r)), Checkpoint: r%3 == 0}
		rec.Members = append(rec.Members, member("t0", "w-h100", "H100-SXM", false, loss))
		switch {
		case r < 3:
			rec.Members = append(rec.Members, member("t1", "w-4090", "RTX4090", true, loss))
		case r == 3:
			rec.Attempt = 1 // retried without rank 1
		default:
			rec.Members = append(rec.Members, member("t1b", "w-a100", "A100-80GB", true, loss))
		}
		for _, m := range rec.Members {
			rec.Tokens += m.Tokens
			rec.BytesSent += m.BytesSent
			rec.BytesReceived += m.BytesReceived
		}
		rounds = append(rounds, rec)
	}
	tr := &meghav1.TrainStatus{Algorithm: "diloco", Committed: 6, Rounds: rounds, AbortedAttempts: 1,
		Checkpoints: []*meghav1.CheckpointInfo{
			{Round: 3, Step: 45, Tokens: 46080, Bytes: 548352, CommittedAt: at(31)},
			{Round: 6, Step: 90, Tokens: 107520, Bytes: 548352, CommittedAt: at(61)},
		}}
	for _, rec := range rounds {
		tr.Tokens += rec.Tokens
		tr.BytesSent += rec.BytesSent
		tr.BytesReceived += rec.BytesReceived
	}
	job := &meghav1.Job{Id: "lm-3f9a", Tenant: "acme",
		Spec: &meghav1.JobSpec{Name: "lm", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
			Model:     &meghav1.ModelSpec{Builtin: "transformer-tiny"},
			Data:      &meghav1.DataSpec{Dataset: "synthetic", BatchSize: 16, SeqLen: 64},
			Resources: &meghav1.Resources{Workers: 2, GpusPerWorker: 1},
			Budget:    &meghav1.Budget{MaxSpendMicros: 5_000_000}},
		Status: &meghav1.JobStatus{State: meghav1.JobState_JOB_STATE_SUCCEEDED, StartedAt: at(0), FinishedAt: at(60),
			SpendMicros: 90_000, Train: tr}}
	tasks := []*meghav1.Task{
		{Id: "t0", JobId: job.Id, WorkerId: "w-h100", Rank: 0, World: 2, State: meghav1.TaskState_TASK_STATE_SUCCEEDED,
			AssignedAt: at(0), StartedAt: at(1), FinishedAt: at(60)},
		{Id: "t1b", JobId: job.Id, WorkerId: "w-a100", Rank: 1, World: 2, State: meghav1.TaskState_TASK_STATE_SUCCEEDED,
			AssignedAt: at(27), StartedAt: at(28), FinishedAt: at(60)},
		{Id: "t1", JobId: job.Id, WorkerId: "w-4090", Rank: 1, World: 2, State: meghav1.TaskState_TASK_STATE_LOST,
			Error: "worker w-4090 lost", AssignedAt: at(0), StartedAt: at(1), FinishedAt: at(25)},
	}
	leases := []*meghav1.Lease{
		{Id: "L3", JobId: job.Id, ProviderName: "gamma", GpuModel: "A100-80GB", Gpus: 1, Emulated: true,
			PricePerGpuHourMicros: 1_200_000, SpentMicros: 20_000, State: meghav1.LeaseState_LEASE_STATE_CLOSED,
			CreatedAt: at(26), ClosedAt: at(98), CloseReason: "job finished"},
		{Id: "L1", JobId: job.Id, ProviderName: "alpha", GpuModel: "H100-SXM", Gpus: 2,
			PricePerGpuHourMicros: 2_000_000, SpentMicros: 60_000, State: meghav1.LeaseState_LEASE_STATE_CLOSED,
			CreatedAt: at(-10), ClosedAt: at(98), CloseReason: "job finished"},
		{Id: "L2", JobId: job.Id, ProviderName: "beta", GpuModel: "RTX4090", Gpus: 1, Emulated: true,
			PricePerGpuHourMicros: 400_000, SpentMicros: 10_000, State: meghav1.LeaseState_LEASE_STATE_CLOSED,
			CreatedAt: at(-10), ClosedAt: at(24), CloseReason: "provider failed"},
	}
	return job, tasks, leases
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestReportGPUHoursFromLeases(t *testing.T) {
	job, tasks, leases := recoveredJob()
	r := Build(job, tasks, leases, t0.Add(time.Hour))
	g := r.GPUHours
	if g.Source != "leases" || len(g.Models) != 3 {
		t.Fatalf("gpu hours: %+v", g)
	}
	want := []ModelHours{
		{GPUModel: "A100-80GB", Emulated: true, Count: 1, GPUs: 1, Hours: 72.0 / 3600},
		{GPUModel: "H100-SXM", Count: 1, GPUs: 2, Hours: 2 * 108.0 / 3600},
		{GPUModel: "RTX4090", Emulated: true, Count: 1, GPUs: 1, Hours: 34.0 / 3600},
	}
	for i, w := range want {
		m := g.Models[i]
		if m.GPUModel != w.GPUModel || m.Emulated != w.Emulated || m.Count != w.Count || m.GPUs != w.GPUs || !near(m.Hours, w.Hours) || m.Open {
			t.Errorf("model %d = %+v, want %+v", i, m, w)
		}
	}
	if !near(g.Total, (72.0+216+34)/3600) {
		t.Errorf("total %v", g.Total)
	}
	if r.Leases[0].ID != "L1" || r.Leases[1].ID != "L2" || r.Leases[2].ID != "L3" || !near(r.Leases[0].Hours, 216.0/3600) ||
		r.Leases[0].PricePerGPUHourMicros != 2_000_000 || r.Leases[0].State != "closed" {
		t.Errorf("leases not by creation time, or wrong: %+v", r.Leases)
	}
}

func TestReportGPUHoursFromTasks(t *testing.T) {
	job, tasks, _ := recoveredJob()
	r := Build(job, tasks, nil, t0.Add(time.Hour))
	g := r.GPUHours
	if g.Source != "tasks" || len(g.Models) != 3 {
		t.Fatalf("gpu hours: %+v", g)
	}
	// t0: 0 → 60 s on an H100; t1: 0 → 25 s on an emulated RTX4090;
	// t1b: 27 → 60 s on an emulated A100.
	for i, w := range []ModelHours{
		{GPUModel: "A100-80GB", Emulated: true, Count: 1, GPUs: 1, Hours: 33.0 / 3600},
		{GPUModel: "H100-SXM", Count: 1, GPUs: 1, Hours: 60.0 / 3600},
		{GPUModel: "RTX4090", Emulated: true, Count: 1, GPUs: 1, Hours: 25.0 / 3600},
	} {
		if m := g.Models[i]; m.GPUModel != w.GPUModel || m.Emulated != w.Emulated || m.GPUs != w.GPUs || !near(m.Hours, w.Hours) {
			t.Errorf("model %d = %+v, want %+v", i, m, w)
		}
	}

	// A running task counts to now and is marked open; a task that never
	// reported a round is of an unknown model.
	job.Status.State = meghav1.JobState_JOB_STATE_RUNNING
	tasks = append(tasks, &meghav1.Task{Id: "t2", Rank: 2, State: meghav1.TaskState_TASK_STATE_RUNNING, AssignedAt: at(50)})
	r = Build(job, tasks, nil, t0.Add(80*time.Second))
	last := r.GPUHours.Models[len(r.GPUHours.Models)-1]
	if last.GPUModel != "unknown" || !last.Open || !near(last.Hours, 30.0/3600) || !r.Live {
		t.Errorf("running task: %+v (live %v)", last, r.Live)
	}
}

func TestReportRecoveryTimeline(t *testing.T) {
	job, tasks, leases := recoveredJob()
	r := Build(job, tasks, leases, t0.Add(time.Hour))
	if len(r.Recoveries) != 1 {
		t.Fatalf("recoveries: %+v", r.Recoveries)
	}
	rc := r.Recoveries[0]
	ts := func(p *time.Time) time.Duration {
		if p == nil {
			return -1
		}
		return p.Sub(t0)
	}
	switch {
	case rc.Rank != 1 || rc.LostTaskID != "t1" || rc.WorkerID != "w-4090" || rc.GPUModel != "RTX4090":
		t.Errorf("who: %+v", rc)
	case ts(rc.DetectedAt) != 25*time.Second || rc.LostInRound != 3 || !rc.LostMidRound:
		t.Errorf("detected %v in round %d (mid-round %v)", ts(rc.DetectedAt), rc.LostInRound, rc.LostMidRound)
	case rc.LostLeaseID != "L2" || ts(rc.LostLeaseClosedAt) != 24*time.Second:
		t.Errorf("lost lease %s closed at %v", rc.LostLeaseID, ts(rc.LostLeaseClosedAt))
	case rc.LeaseID != "L3" || ts(rc.LeasedAt) != 26*time.Second:
		t.Errorf("leased %s at %v", rc.LeaseID, ts(rc.LeasedAt))
	case rc.ReplacementTaskID != "t1b" || rc.ReplacementWorkerID != "w-a100" || ts(rc.PlacedAt) != 27*time.Second:
		t.Errorf("placed %s on %s at %v", rc.ReplacementTaskID, rc.ReplacementWorkerID, ts(rc.PlacedAt))
	case rc.RestoredAt != nil:
		t.Errorf("restored_at invented: %v", rc.RestoredAt)
	case rc.RejoinedRound != 4 || ts(rc.RejoinedAt) != 30*time.Second:
		t.Errorf("rejoined round %d at %v", rc.RejoinedRound, ts(rc.RejoinedAt))
	case rc.RecoverySeconds == nil || *rc.RecoverySeconds != 5:
		t.Errorf("recovery seconds %v", rc.RecoverySeconds)
	case rc.RoundsWithoutRank != 1:
		t.Errorf("rounds without rank 1: %d", rc.RoundsWithoutRank)
	case rc.WorkLostSamplesEstimate == nil || *rc.WorkLostSamplesEstimate != 15*16 || *rc.WorkLostTokensEstimate != 15*16*64 || rc.WorkLostBasisRound != 2:
		t.Errorf("work lost %v %v basis %d", rc.WorkLostSamplesEstimate, rc.WorkLostTokensEstimate, rc.WorkLostBasisRound)
	}

	// Before the replacement has joined a round, the job is live and the
	// recovery open.
	job.Status.State, job.Status.FinishedAt = meghav1.JobState_JOB_STATE_RUNNING, nil
	job.Status.Train.Rounds = job.Status.Train.Rounds[:3]
	job.Status.Train.Committed = 3
	r = Build(job, tasks, leases, t0.Add(31*time.Second))
	rc = r.Recoveries[0]
	if rc.RejoinedAt != nil || rc.RecoverySeconds != nil || rc.ReplacementTaskID != "t1b" || rc.RoundsWithoutRank != 1 {
		t.Errorf("open recovery: %+v", rc)
	}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "→ placed +2.0s → not rejoined yet") || !strings.Contains(b.String(), "Live snapshot") {
		t.Errorf("open recovery text:\n%s", b.String())
	}
}

// TestReportRecoveryBeforeDetection is the usual order with a market: the
// provider fails and its lease closes, the gap is leased again, and only
// then does the failure detector declare the worker lost, between rounds.
func TestReportRecoveryBeforeDetection(t *testing.T) {
	job, tasks, leases := recoveredJob()
	tasks[2].FinishedAt = at(30.5) // detected after round 3 committed, before round 4 formed
	leases[0].CreatedAt = at(29.5) // L3, the replacement, leased before the detection
	job.Status.Train.Rounds[3].StartedAt = at(31)
	tasks[1].AssignedAt = at(30.6)
	r := Build(job, tasks, leases, t0.Add(time.Hour))
	rc := r.Recoveries[0]
	if rc.LostInRound != 4 || rc.LostMidRound || rc.LostLeaseID != "L2" || rc.LeaseID != "L3" || rc.RoundsWithoutRank != 0 ||
		rc.RecoverySeconds == nil || *rc.RecoverySeconds != 0.5 {
		t.Errorf("recovery: %+v", rc)
	}
	var text, svg bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if want := "rank 1 lost 12:00:30 between rounds 3 and 4 (task t1 on worker w-4090, RTX4090; its lease L2 closed -6.5s) → leased -1.0s → placed +0.1s → rejoined round 4 +0.5s"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	// The marker stands halfway between rounds 3 and 4.
	if err := WriteSVG(&svg, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg.String(), `<line class="recovery" x1="400.0"`) || !strings.Contains(svg.String(), "rank 1 lost between rounds 3 and 4") {
		t.Errorf("marker not between rounds 3 and 4:\n%s", svg.String())
	}
}

func TestReportJSONKeys(t *testing.T) {
	job, tasks, leases := recoveredJob()
	var b bytes.Buffer
	if err := WriteJSON(&b, Build(job, tasks, leases, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	has := func(obj any, where string, keys ...string) {
		t.Helper()
		o, ok := obj.(map[string]any)
		if !ok {
			t.Fatalf("%s is %T, not an object", where, obj)
		}
		for _, k := range keys {
			if _, ok := o[k]; !ok {
				t.Errorf("%s lacks %q", where, k)
			}
		}
	}
	has(m, "report", "job_id", "name", "tenant", "state", "live", "model", "dataset", "algorithm", "generated_at",
		"started_at", "finished_at", "duration_seconds", "last_error", "loss", "totals", "gpu_hours", "spend", "leases",
		"recoveries", "checkpoints", "final_checkpoint", "notes")
	has(m["loss"].([]any)[1], "loss[1]", "round", "train_loss", "val_loss", "tokens", "members", "committed_at")
	has(m["totals"], "totals", "rounds", "tokens", "bytes_sent", "bytes_received", "aborted_attempts", "tasks", "lost_tasks")
	has(m["gpu_hours"], "gpu_hours", "source", "total", "models")
	has(m["gpu_hours"].(map[string]any)["models"].([]any)[0], "gpu_hours.models[0]", "gpu_model", "emulated", "count", "gpus", "hours", "open")
	has(m["spend"], "spend", "spent_micros", "budget_micros")
	has(m["leases"].([]any)[0], "leases[0]", "id", "provider", "gpu_model", "gpus", "emulated", "price_per_gpu_hour_micros",
		"spent_micros", "state", "created_at", "closed_at", "hours")
	has(m["recoveries"].([]any)[0], "recoveries[0]", "rank", "lost_task_id", "worker_id", "detected_at", "lost_in_round",
		"lost_mid_round", "lost_lease_id", "lost_lease_closed_at", "replacement_task_id", "lease_id", "leased_at", "placed_at", "restored_at", "rejoined_at", "rejoined_round",
		"recovery_seconds", "rounds_without_rank", "work_lost_samples_estimate", "work_lost_tokens_estimate", "work_lost_basis_round")
	has(m["final_checkpoint"], "final_checkpoint", "round", "step", "tokens", "bytes", "committed_at")
	if m["recoveries"].([]any)[0].(map[string]any)["restored_at"] != nil {
		t.Error("restored_at is not null")
	}
	if m["loss"].([]any)[0].(map[string]any)["val_loss"] != nil {
		t.Error("round 1 has no validation loss, but val_loss is not null")
	}
	if m["gpu_hours"].(map[string]any)["models"].([]any)[0].(map[string]any)["emulated"] != true {
		t.Error("the A100 is not marked emulated")
	}
}

func TestReportText(t *testing.T) {
	job, tasks, leases := recoveredJob()
	var b bytes.Buffer
	if err := WriteText(&b, Build(job, tasks, leases, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Report of lm-3f9a (lm)",
		"Model:        transformer-tiny on synthetic, DiLoCo",
		"Finished:     2026-11-22T12:01:00Z (1m0s)",
		"Rounds:       6 committed, 168960 tokens; 1 attempt abandoned and retried",
		"Spend:        $0.09 of a budget of $5.00 (2%)",
		"Checkpoint:   final round 6, step 90, 535.5 KiB, committed 12:01:01 (2 kept)",
		"ROUND  TRAIN   VAL     TOKENS  WORKERS  COMMITTED",
		"2      4.0000  4.2000  30720   2        12:00:20",
		"3      3.5000  -       15360   1        12:00:30",
		"A100-80GB (emulated)",
		"1×RTX4090 (emulated)",
		"rank 1 lost 12:00:25 during round 3 (task t1 on worker w-4090, RTX4090; its lease L2 closed -1.0s) → leased +1.0s → placed +2.0s → rejoined round 4 +5.0s",
		"recovered in 5.0s",
		"1 round committed without rank 1",
		"work lost ≈ 240 samples, 15360 tokens (estimate",
		"restore time not recorded",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Live snapshot") {
		t.Errorf("a finished job is called live:\n%s", out)
	}
}

func TestReportLossTableIsSampled(t *testing.T) {
	var pts []LossPoint
	for r := uint64(1); r <= 100; r++ {
		pts = append(pts, LossPoint{Round: r})
	}
	got := sampleRounds(pts, maxLossRows)
	if len(got) != maxLossRows || got[0].Round != 1 || got[len(got)-1].Round != 100 {
		t.Errorf("sampled %d rows, %d..%d", len(got), got[0].Round, got[len(got)-1].Round)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Round <= got[i-1].Round {
			t.Errorf("rows out of order: %v", got)
		}
	}
}

// parseSVG checks that s is well-formed XML with an <svg> root and returns
// its elements' names with their class attributes.
func parseSVG(t *testing.T, s []byte) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(s))
	var els []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, s)
		}
		if se, ok := tok.(xml.StartElement); ok {
			name := se.Name.Local
			for _, a := range se.Attr {
				if a.Name.Local == "class" {
					name += "." + a.Value
				}
			}
			els = append(els, name)
		}
	}
	if len(els) == 0 || els[0] != "svg" {
		t.Fatalf("root is not svg: %v", els)
	}
	return els
}

func count(els []string, name string) int {
	n := 0
	for _, e := range els {
		if e == name {
			n++
		}
	}
	return n
}

func TestReportSVG(t *testing.T) {
	job, tasks, leases := recoveredJob()
	job.Spec.Name = `lm <"&">`
	r := Build(job, tasks, leases, t0.Add(time.Hour))
	var a, b bytes.Buffer
	if err := WriteSVG(&a, r); err != nil {
		t.Fatal(err)
	}
	els := parseSVG(t, a.Bytes())
	if count(els, "polyline.train") != 1 || count(els, "polyline.val") != 1 || count(els, "line.recovery") != 1 || count(els, "g.legend") != 1 {
		t.Errorf("SVG elements: %v", els)
	}
	if !strings.Contains(a.String(), "Loss of lm &lt;&#34;&amp;&#34;&gt;") || !strings.Contains(a.String(), "rank 1 lost during round 3, rejoined in round 4") {
		t.Errorf("SVG title or marker:\n%s", a.String())
	}
	if err := WriteSVG(&b, Build(job, tasks, leases, t0.Add(time.Hour))); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("SVG output is not deterministic (%v)", err)
	}
}

func TestReportEdgeCases(t *testing.T) {
	job := &meghav1.Job{Id: "new-1", Spec: &meghav1.JobSpec{Name: "new", Kind: meghav1.JobKind_JOB_KIND_TRAIN},
		Status: &meghav1.JobStatus{State: meghav1.JobState_JOB_STATE_PENDING}}
	check := func(name string, r *Report, polylines, circles int, texts ...string) {
		t.Helper()
		var svg, text, js bytes.Buffer
		if err := WriteSVG(&svg, r); err != nil {
			t.Fatal(err)
		}
		els := parseSVG(t, svg.Bytes())
		if got := count(els, "polyline.train") + count(els, "polyline.val"); got != polylines {
			t.Errorf("%s: %d polylines, want %d: %v", name, got, polylines, els)
		}
		if got := count(els, "circle.train") + count(els, "circle.val"); got != circles {
			t.Errorf("%s: %d dots, want %d: %v", name, got, circles, els)
		}
		if err := WriteText(&text, r); err != nil {
			t.Fatal(err)
		}
		for _, w := range texts {
			if !strings.Contains(text.String()+svg.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s\n%s", name, w, text.String(), svg.String())
			}
		}
		if err := WriteJSON(&js, r); err != nil || !json.Valid(js.Bytes()) {
			t.Errorf("%s: JSON: %v\n%s", name, err, js.String())
		}
	}

	// Nothing has happened: no rounds, tasks, leases or start.
	r := Build(job, nil, nil, t0)
	if r.DurationSeconds != nil || r.GPUHours.Source != "" || r.FinalCheckpoint != nil || !r.Live {
		t.Errorf("empty job: %+v", r)
	}
	check("no rounds", r, 0, 0, "Loss: no rounds committed yet.", "no rounds committed yet</text>", "Live snapshot")

	// One round, training loss only.
	job.Status.State, job.Status.StartedAt = meghav1.JobState_JOB_STATE_RUNNING, at(0)
	job.Status.Train = &meghav1.TrainStatus{Committed: 1, Rounds: []*meghav1.RoundRecord{
		{Round: 1, TrainLoss: 5.5, Tokens: 100, CommittedAt: at(10)}}}
	check("one round", Build(job, nil, nil, t0.Add(time.Minute)), 1, 1, "1      5.5000  -")

	// Non-finite losses are skipped in the chart and null in the JSON.
	job.Status.Train.Rounds = append(job.Status.Train.Rounds,
		&meghav1.RoundRecord{Round: 2, TrainLoss: math.NaN(), ValLoss: math.Inf(1), HasVal: true, CommittedAt: at(20)},
		&meghav1.RoundRecord{Round: 3, TrainLoss: 4.5, ValLoss: 4.75, HasVal: true, CommittedAt: at(30)})
	r = Build(job, nil, nil, t0.Add(time.Minute))
	if r.Loss[1].TrainLoss != nil || r.Loss[1].ValLoss != nil {
		t.Errorf("NaN/Inf kept: %+v", r.Loss[1])
	}
	check("NaN loss", r, 2, 1, "2      -       -", `points="`)
	var svg bytes.Buffer
	WriteSVG(&svg, r)
	if strings.Contains(svg.String(), "NaN") || strings.Contains(svg.String(), "Inf") {
		t.Errorf("non-finite number in the SVG:\n%s", svg.String())
	}
}
