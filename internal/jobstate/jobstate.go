// Package jobstate holds the small facts about job states shared by the
// coordinator, the client library and the CLI: names, terminality and the
// allowed transitions of
//
//	Pending → Leasing → Running ⇄ Recovering → Succeeded | Failed | Cancelled
//
// (any live state may also fail or be cancelled; Recovering may go back to
// Leasing when it needs a replacement lease; Pending goes straight to
// Running when workers that need no lease are already there).
package jobstate

import (
	"fmt"
	"slices"
	"strings"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

var names = map[meghav1.JobState]string{
	meghav1.JobState_JOB_STATE_PENDING:    "pending",
	meghav1.JobState_JOB_STATE_LEASING:    "leasing",
	meghav1.JobState_JOB_STATE_RUNNING:    "running",
	meghav1.JobState_JOB_STATE_RECOVERING: "recovering",
	meghav1.JobState_JOB_STATE_SUCCEEDED:  "succeeded",
	meghav1.JobState_JOB_STATE_FAILED:     "failed",
	meghav1.JobState_JOB_STATE_CANCELLED:  "cancelled",
}

var next = map[meghav1.JobState][]meghav1.JobState{
	meghav1.JobState_JOB_STATE_PENDING:    {meghav1.JobState_JOB_STATE_LEASING, meghav1.JobState_JOB_STATE_RUNNING, meghav1.JobState_JOB_STATE_FAILED, meghav1.JobState_JOB_STATE_CANCELLED},
	meghav1.JobState_JOB_STATE_LEASING:    {meghav1.JobState_JOB_STATE_RUNNING, meghav1.JobState_JOB_STATE_FAILED, meghav1.JobState_JOB_STATE_CANCELLED},
	meghav1.JobState_JOB_STATE_RUNNING:    {meghav1.JobState_JOB_STATE_RECOVERING, meghav1.JobState_JOB_STATE_SUCCEEDED, meghav1.JobState_JOB_STATE_FAILED, meghav1.JobState_JOB_STATE_CANCELLED},
	meghav1.JobState_JOB_STATE_RECOVERING: {meghav1.JobState_JOB_STATE_RUNNING, meghav1.JobState_JOB_STATE_LEASING, meghav1.JobState_JOB_STATE_FAILED, meghav1.JobState_JOB_STATE_CANCELLED},
}

// Name is the short lowercase name of st, as the CLI prints it.
func Name(st meghav1.JobState) string {
	if n, ok := names[st]; ok {
		return n
	}
	return "unknown"
}

// Parse reads a state name as Name prints it (case-insensitive).
func Parse(s string) (meghav1.JobState, error) {
	for st, n := range names {
		if strings.EqualFold(s, n) {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown job state %q; use one of pending, leasing, running, recovering, succeeded, failed, cancelled", s)
}

// Terminal reports whether a job in state st is finished for good.
func Terminal(st meghav1.JobState) bool {
	switch st {
	case meghav1.JobState_JOB_STATE_SUCCEEDED, meghav1.JobState_JOB_STATE_FAILED, meghav1.JobState_JOB_STATE_CANCELLED:
		return true
	}
	return false
}

// CanTransition reports whether a job may move from one state to another.
func CanTransition(from, to meghav1.JobState) bool {
	return slices.Contains(next[from], to)
}
