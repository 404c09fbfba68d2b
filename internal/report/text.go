package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/megha-ml/megha/internal/units"
)

// maxLossRows bounds the loss table of the text report; report.json and
// loss.svg have every round.
const maxLossRows = 12

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes r for people: a summary, a sampled loss table, GPU-hours
// by model, leases, a timeline per recovery and what is estimated. Times
// are UTC; the output depends on r alone.
func WriteText(w io.Writer, r *Report) error {
	p := &printer{w: w}
	title := r.JobID
	if r.Name != "" {
		title += " (" + r.Name + ")"
	}
	p.f("Report of %s\n", title)
	if r.Live {
		p.f("Live snapshot at %s: the job is %s, so every figure below may still change.\n", r.GeneratedAt.Format(time.RFC3339), r.State)
	}
	p.f("\n")
	p.f("State:        %s\n", r.State)
	what := orDash(r.Model)
	if r.Dataset != "" {
		what += " on " + r.Dataset
	}
	if r.Algorithm != "" {
		what += ", " + algorithmName(r.Algorithm)
	}
	p.f("Model:        %s\n", what)
	p.f("Started:      %s\n", clock(r.StartedAt, time.RFC3339))
	finished := clock(r.FinishedAt, time.RFC3339)
	if r.DurationSeconds != nil {
		if r.FinishedAt != nil {
			finished += " (" + dur(*r.DurationSeconds) + ")"
		} else {
			finished += " (running for " + dur(*r.DurationSeconds) + ")"
		}
	}
	p.f("Finished:     %s\n", finished)
	t := r.Totals
	rounds := fmt.Sprintf("%d committed, %d tokens", t.Rounds, t.Tokens)
	if t.AbortedAttempts > 0 {
		rounds += "; " + plural(int(t.AbortedAttempts), "attempt", "attempts") + " abandoned and retried"
	}
	p.f("Rounds:       %s\n", rounds)
	p.f("Traffic:      %s sent, %s received by all workers\n", units.Bytes(t.BytesSent), units.Bytes(t.BytesReceived))
	tasks := fmt.Sprintf("%d placed", t.Tasks)
	if t.LostTasks > 0 {
		tasks += fmt.Sprintf(", %d lost with their worker", t.LostTasks)
	}
	p.f("Tasks:        %s\n", tasks)
	spend := usd(r.Spend.SpentMicros) + " (no budget cap)"
	if b := r.Spend.BudgetMicros; b > 0 {
		spend = fmt.Sprintf("%s of a budget of %s (%.0f%%)", usd(r.Spend.SpentMicros), usd(b), 100*float64(r.Spend.SpentMicros)/float64(b))
	}
	p.f("Spend:        %s\n", spend)
	if r.GPUHours.Source != "" {
		p.f("GPU-hours:    %s (%s)\n", hrs(r.GPUHours.Total), map[string]string{"leases": "rented, from leases", "tasks": "held by tasks; no leases"}[r.GPUHours.Source])
	}
	if c := r.FinalCheckpoint; c != nil {
		p.f("Checkpoint:   final round %d, step %d, %s, committed %s (%d kept)\n", c.Round, c.Step, units.Bytes(c.Bytes), clock(c.CommittedAt, "15:04:05"), len(r.Checkpoints))
	} else {
		p.f("Checkpoint:   none\n")
	}
	if r.LastError != "" {
		p.f("Last error:   %s\n", r.LastError)
	}

	p.f("\n")
	if len(r.Loss) == 0 {
		p.f("Loss: no rounds committed yet.\n")
	} else {
		rows := sampleRounds(r.Loss, maxLossRows)
		head := "Loss (" + plural(len(r.Loss), "round", "rounds")
		if len(rows) < len(r.Loss) {
			head += fmt.Sprintf(", %d shown; report.json and loss.svg have all", len(rows))
		}
		p.f("%s)\n", head)
		tw := p.table("ROUND", "TRAIN", "VAL", "TOKENS", "WORKERS", "COMMITTED")
		for _, l := range rows {
			row(tw, l.Round, lossText(l.TrainLoss), lossText(l.ValLoss), l.Tokens, l.Members, clock(l.CommittedAt, "15:04:05"))
		}
		p.flush(tw)
	}

	if len(r.GPUHours.Models) > 0 {
		p.f("\nGPU-hours by model (%s)\n", map[string]string{
			"leases": "each lease from creation to close, × GPUs",
			"tasks":  "each task from assignment to end, × GPUs per worker",
		}[r.GPUHours.Source])
		unit := map[string]string{"leases": "LEASES", "tasks": "TASKS"}[r.GPUHours.Source]
		tw := p.table("GPU", unit, "GPUS", "GPU-HOURS")
		for _, m := range r.GPUHours.Models {
			h := hrs(m.Hours)
			if m.Open {
				h += " (still open)"
			}
			row(tw, gpuName(m.GPUModel, m.Emulated), m.Count, m.GPUs, h)
		}
		row(tw, "total", "", "", hrs(r.GPUHours.Total))
		p.flush(tw)
	}

	if len(r.Leases) > 0 {
		p.f("\nLeases\n")
		tw := p.table("LEASE", "PROVIDER", "GPUS", "$/GPU-H", "GPU-HOURS", "SPENT", "OPENED", "STATE")
		for _, l := range r.Leases {
			state := l.State
			if l.CloseReason != "" {
				state += ": " + l.CloseReason
			}
			row(tw, l.ID, orDash(l.Provider), fmt.Sprintf("%d×%s", l.GPUs, gpuName(l.GPUModel, l.Emulated)),
				usd(l.PricePerGPUHourMicros), hrs(l.Hours), usd(l.SpentMicros), clock(l.CreatedAt, "15:04:05"), state)
		}
		p.flush(tw)
	}

	if len(r.Recoveries) > 0 {
		p.f("\nRecoveries\n")
		for _, rc := range r.Recoveries {
			p.f("%s\n", timeline(rc, len(r.Leases) > 0, r.Live))
			p.f("  %s\n", recoveryDetail(rc))
		}
	}

	if len(r.Notes) > 0 {
		p.f("\nNotes\n")
		for _, n := range r.Notes {
			p.f("- %s\n", n)
		}
	}
	p.f("\nTimes are UTC.\n")
	return p.err
}

// timeline is a recovery on one line, each step timed from the detection
// (a market may close the lost lease, and a replacement be leased, before
// the failure detector notices: those show as negative):
//
//	rank 1 lost 12:03:04 during round 6 (task t1 on worker w1, RTX4090) → leased +2.1s → placed +2.3s → rejoined round 7 +6.3s
func timeline(rc Recovery, haveLeases, live bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rank %d lost %s %s (task %s on worker %s", rc.Rank, clock(rc.DetectedAt, "15:04:05"), lostWhen(rc), rc.LostTaskID, rc.WorkerID)
	if rc.GPUModel != "" {
		fmt.Fprintf(&b, ", %s", rc.GPUModel)
	}
	since := func(t *time.Time) string {
		if t == nil || rc.DetectedAt == nil {
			return "at an unrecorded time"
		}
		d := t.Sub(*rc.DetectedAt).Seconds()
		if d < 0 {
			return "-" + dur(-d)
		}
		return "+" + dur(d)
	}
	if rc.LostLeaseID != "" {
		fmt.Fprintf(&b, "; its lease %s closed %s", rc.LostLeaseID, since(rc.LostLeaseClosedAt))
	}
	b.WriteString(")")
	if haveLeases {
		if rc.LeasedAt != nil {
			fmt.Fprintf(&b, " → leased %s", since(rc.LeasedAt))
		} else {
			b.WriteString(" → no lease since")
		}
	}
	if rc.ReplacementTaskID == "" {
		if live {
			b.WriteString(" → no replacement placed yet")
		} else {
			b.WriteString(" → never replaced")
		}
		return b.String()
	}
	fmt.Fprintf(&b, " → placed %s", since(rc.PlacedAt))
	switch {
	case rc.RejoinedRound > 0:
		fmt.Fprintf(&b, " → rejoined round %d %s", rc.RejoinedRound, since(rc.RejoinedAt))
	case live:
		b.WriteString(" → not rejoined yet")
	default:
		b.WriteString(" → never rejoined")
	}
	return b.String()
}

// lostWhen places a loss among the rounds: "during round 4" or "between
// rounds 3 and 4".
func lostWhen(rc Recovery) string {
	if rc.LostMidRound || rc.LostInRound <= 1 {
		if !rc.LostMidRound {
			return "before round 1"
		}
		return fmt.Sprintf("during round %d", rc.LostInRound)
	}
	return fmt.Sprintf("between rounds %d and %d", rc.LostInRound-1, rc.LostInRound)
}

// recoveryDetail is the second line of a recovery: how long, what was
// lost, what was not recorded.
func recoveryDetail(rc Recovery) string {
	var parts []string
	if rc.RecoverySeconds != nil {
		parts = append(parts, "recovered in "+dur(*rc.RecoverySeconds))
	}
	if rc.ReplacementTaskID != "" {
		parts = append(parts, fmt.Sprintf("replacement %s on worker %s", rc.ReplacementTaskID, rc.ReplacementWorkerID))
	}
	parts = append(parts, fmt.Sprintf("%s committed without rank %d", plural(int(rc.RoundsWithoutRank), "round", "rounds"), rc.Rank))
	if rc.WorkLostSamplesEstimate != nil {
		parts = append(parts, fmt.Sprintf("work lost ≈ %d samples, %d tokens (estimate: its share of round %d; at most one round)",
			*rc.WorkLostSamplesEstimate, *rc.WorkLostTokensEstimate, rc.WorkLostBasisRound))
	} else {
		parts = append(parts, "work lost unknown (it never committed a round)")
	}
	parts = append(parts, "restore time not recorded")
	return strings.Join(parts, "; ")
}

// sampleRounds picks at most n points evenly, always the first and last.
func sampleRounds(pts []LossPoint, n int) []LossPoint {
	if len(pts) <= n {
		return pts
	}
	out := make([]LossPoint, 0, n)
	for i := range n {
		out = append(out, pts[i*(len(pts)-1)/(n-1)])
	}
	return out
}

// printer writes, keeping the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) table(header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func (p *printer) flush(tw *tabwriter.Writer) {
	if err := tw.Flush(); p.err == nil {
		p.err = err
	}
}

func row(tw *tabwriter.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

func gpuName(model string, emulated bool) string {
	if emulated {
		return model + " (emulated)"
	}
	return model
}

func algorithmName(a string) string {
	switch a {
	case "diloco":
		return "DiLoCo"
	case "ddp":
		return "DDP"
	}
	return a
}

func lossText(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 4, 64)
}

func usd(micros int64) string { return fmt.Sprintf("$%.2f", float64(micros)/1e6) }

func hrs(h float64) string { return strconv.FormatFloat(h, 'f', 4, 64) }

func clock(t *time.Time, layout string) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(layout)
}

// dur renders seconds: 2.1s under a minute, 4m12s above.
func dur(s float64) string {
	if s < 60 {
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
