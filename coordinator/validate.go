package coordinator

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"unicode"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/jobspec"
)

// Limits on request fields.
const (
	maxIDLen        = 128
	maxRequestIDLen = 128
	maxReasonLen    = 1024
	maxPageSize     = 1000
	defaultPageSize = 100
)

// validateRequest checks a request's shape before any handler runs; it
// names the bad field and says what to send instead. Nothing is written for
// a request that fails here.
func validateRequest(req any) error {
	var errs jobspec.FieldErrors
	add := func(field, format string, args ...any) {
		errs = append(errs, jobspec.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	checkID := func(field, id string) {
		switch {
		case id == "":
			add(field, "is required; give the job ID that `megha jobs` lists")
		case len(id) > maxIDLen || !printable(id):
			add(field, "must be at most %d printable characters", maxIDLen)
		}
	}
	switch r := req.(type) {
	case *meghav1.SubmitJobRequest:
		if len(r.RequestId) > maxRequestIDLen || !printable(r.RequestId) {
			add("request_id", "must be at most %d printable characters", maxRequestIDLen)
		}
		if r.Spec == nil {
			add("spec", "is required")
			break
		}
		// Defaults are filled in place: the request belongs to this call,
		// and the handler would fill the same ones.
		jobspec.ApplyDefaults(r.Spec)
		if err := jobspec.Validate(r.Spec); err != nil {
			if fe, ok := err.(jobspec.FieldErrors); ok {
				for _, f := range fe {
					add("spec."+f.Field, "%s", f.Msg)
				}
			} else {
				add("spec", "%v", err)
			}
		}
	case *meghav1.GetJobRequest:
		checkID("id", r.Id)
	case *meghav1.CancelJobRequest:
		checkID("id", r.Id)
		if len(r.Reason) > maxReasonLen {
			add("reason", "must be at most %d characters", maxReasonLen)
		}
	case *meghav1.WatchJobRequest:
		checkID("id", r.Id)
	case *meghav1.ListJobsRequest:
		if r.PageSize > maxPageSize {
			add("page_size", "must be at most %d, got %d", maxPageSize, r.PageSize)
		}
		if r.PageToken != "" {
			if _, err := strconv.ParseUint(r.PageToken, 10, 64); err != nil {
				add("page_token", "is not a token this server issued; pass next_page_token from the previous page")
			}
		}
		for i, st := range r.States {
			if _, ok := meghav1.JobState_name[int32(st)]; !ok || st == meghav1.JobState_JOB_STATE_UNSPECIFIED {
				add(fmt.Sprintf("states[%d]", i), "unknown job state %d", st)
			}
		}
		if r.Tenant != "" && !validTenant(r.Tenant) {
			add("tenant", "use 1-63 characters of a-z, 0-9, '-' and '_'")
		}
	case *meghav1.AddVoterRequest:
		if r.Id == "" || len(r.Id) > maxIDLen || !printable(r.Id) {
			add("id", "is required: the joining node's --id, at most %d printable characters", maxIDLen)
		}
		if r.RaftAddr == "" {
			add("raft_addr", "is required: the joining node's Raft host:port")
		}
		if r.GrpcAddr == "" {
			add("grpc_addr", "is required: the joining node's gRPC host:port")
		}
	case *meghav1.RegisterWorkerRequest:
		validateRegister(r, add)
	case *meghav1.HeartbeatRequest:
		if r.WorkerId == "" || r.Epoch == 0 {
			add("worker_id", "and epoch are required: send what Register returned")
		}
		if len(r.Gpus) > maxGPUs {
			add("gpus", "at most %d GPUs per worker, got %d", maxGPUs, len(r.Gpus))
		}
	case *meghav1.AssignmentsRequest:
		if r.WorkerId == "" || r.Epoch == 0 {
			add("worker_id", "and epoch are required: send what Register returned")
		}
	case *meghav1.ProgressReport:
		if r.WorkerId == "" || r.Epoch == 0 || r.TaskId == "" {
			add("task_id", "worker_id and epoch are required")
		}
		if len(r.Error) > 4096 {
			add("error", "must be at most 4096 characters")
		}
	case *meghav1.ListTasksRequest:
		checkID("job_id", r.JobId)
	case *meghav1.TaskLogsRequest:
		checkID("job_id", r.JobId)
		if r.Stream != "" && r.Stream != "stdout" && r.Stream != "stderr" {
			add("stream", "use stdout or stderr")
		}
	case *meghav1.LeaveRequest:
		if r.WorkerId == "" || r.Epoch == 0 {
			add("worker_id", "and epoch are required: send what Register returned")
		}
		if len(r.Reason) > maxReasonLen {
			add("reason", "must be at most %d characters", maxReasonLen)
		}
	case *meghav1.RemoveVoterRequest:
		if r.Id == "" || len(r.Id) > maxIDLen {
			add("id", "is required: the node ID that `megha cluster members` lists")
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Limits on a worker's registration.
const (
	maxGPUs       = 64
	maxWorkerID   = 64
	maxShortField = 256
)

func validateRegister(r *meghav1.RegisterWorkerRequest, add func(field, format string, args ...any)) {
	if r.WorkerId != "" && !validWorkerID(r.WorkerId) {
		add("worker_id", "use 1-%d characters of a-z, 0-9, '-', '_' and '.', or leave it empty to get one", maxWorkerID)
	}
	for field, v := range map[string]string{"host": r.Host, "version": r.Version, "lease_id": r.LeaseId} {
		if len(v) > maxShortField || !printable(v) {
			add(field, "must be at most %d printable characters", maxShortField)
		}
	}
	if r.AdvertiseAddr != "" {
		if _, port, err := net.SplitHostPort(r.AdvertiseAddr); err != nil || port == "" || port == "0" {
			add("advertise_addr", "must be host:port that peers can dial, got %q", r.AdvertiseAddr)
		}
	}
	if len(r.AgentKey) > maxShortField {
		add("agent_key", "must be at most %d characters", maxShortField)
	}
	if len(r.Gpus) > maxGPUs {
		add("gpus", "at most %d GPUs per worker, got %d", maxGPUs, len(r.Gpus))
	}
	seen := make(map[string]bool, len(r.Gpus))
	for i, g := range r.Gpus {
		f := fmt.Sprintf("gpus[%d]", i)
		switch {
		case g.Uuid == "" || len(g.Uuid) > maxShortField || !printable(g.Uuid):
			add(f+".uuid", "is required: the device's UUID (at most %d printable characters)", maxShortField)
		case seen[g.Uuid]:
			add(f+".uuid", "%q appears twice; every GPU needs its own UUID", g.Uuid)
		}
		seen[g.Uuid] = true
		if g.MemoryBytes == 0 {
			add(f+".memory_bytes", "must be the device's memory in bytes, got 0")
		}
		if len(g.Model) > maxShortField || len(g.Name) > maxShortField || !printable(g.Model) || !printable(g.Name) {
			add(f+".name", "model and name must be at most %d printable characters", maxShortField)
		}
		if g.UtilizationPct > 100 {
			add(f+".utilization_pct", "is a percentage, got %d", g.UtilizationPct)
		}
	}
	if t := r.Throughput; t != nil {
		if math.IsNaN(t.SamplesPerSecond) || math.IsInf(t.SamplesPerSecond, 0) || t.SamplesPerSecond < 0 {
			add("throughput.samples_per_second", "must be a finite number >= 0")
		}
		if len(t.Probe) > maxShortField || !printable(t.Probe) {
			add("throughput.probe", "must be at most %d printable characters", maxShortField)
		}
	}
}

func validWorkerID(s string) bool {
	if len(s) == 0 || len(s) > maxWorkerID {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
