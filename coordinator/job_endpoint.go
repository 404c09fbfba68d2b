package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"github.com/megha-ml/megha/internal/jobstate"
	"github.com/megha-ml/megha/jobspec"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jobEndpoint serves JobService. Every handler runs after auth, the method
// policy, the rate limit and request validation; it stamps what Apply must
// not compute (IDs, times), applies through Raft and maps errors.
type jobEndpoint struct {
	meghav1.UnimplementedJobServiceServer
	s *Server
}

func (e *jobEndpoint) Submit(ctx context.Context, req *meghav1.SubmitJobRequest) (*meghav1.SubmitJobResponse, error) {
	id, _ := IdentityFrom(ctx)
	spec := req.Spec // owned by this call; validation already checked it
	jobspec.ApplyDefaults(spec)
	if scheduler.BuiltinTrain(&meghav1.Job{Spec: spec}) && spec.GetCheckpoint().GetStore() == "" {
		spec.Checkpoint.Store = e.s.node.checkpointStore()
	}
	now := timestamppb.New(time.Now())
	var (
		res *ApplyResult
		err error
	)
	// A fresh random ID can collide with an existing job; the FSM refuses
	// it, and a new ID is drawn. Collisions are rare (48 random bits per
	// name), so a few attempts always suffice.
	for attempt := 0; attempt < 4; attempt++ {
		job := &meghav1.Job{
			Id:     newJobID(spec.Name),
			Tenant: id.Tenant,
			Spec:   spec,
			Status: &meghav1.JobStatus{CreatedAt: now},
		}
		res, err = e.s.batcher.submit(ctx, &meghav1.SubmitJobCommand{Job: job, RequestId: req.RequestId})
		if !errors.Is(err, ErrJobExists) {
			break
		}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if !res.Existed {
		e.s.logger.Info("job submitted", "job_id", res.Job.Id, "tenant", res.Job.Tenant, "token_id", id.TokenID)
	}
	return &meghav1.SubmitJobResponse{Job: res.Job, Existed: res.Existed}, nil
}

// newJobID makes a readable job ID: the job's name and 12 random hex
// digits.
func newJobID(name string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

func (e *jobEndpoint) Get(ctx context.Context, req *meghav1.GetJobRequest) (*meghav1.Job, error) {
	if !req.AllowStale {
		if err := e.s.node.checkLeader(true); err != nil {
			return nil, toStatus(err)
		}
	}
	job, err := e.visibleJob(ctx, req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return job, nil
}

// visibleJob returns the job if the caller may see it; a tenant asking for
// another tenant's job is told it does not exist.
func (e *jobEndpoint) visibleJob(ctx context.Context, jobID string) (*meghav1.Job, error) {
	id, _ := IdentityFrom(ctx)
	job, ok := e.s.node.fsm.State().Job(jobID)
	if !ok || (id.Role != RoleAdmin && job.Tenant != id.Tenant) {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, jobID)
	}
	return job, nil
}

func (e *jobEndpoint) List(ctx context.Context, req *meghav1.ListJobsRequest) (*meghav1.ListJobsResponse, error) {
	if !req.AllowStale {
		if err := e.s.node.checkLeader(true); err != nil {
			return nil, toStatus(err)
		}
	}
	id, _ := IdentityFrom(ctx)
	f := JobFilter{Tenant: req.Tenant, States: req.States, Limit: int(req.PageSize)}
	if id.Role != RoleAdmin {
		if req.Tenant != "" && req.Tenant != id.Tenant {
			return nil, toStatus(fmt.Errorf("%w: a tenant token lists only its own tenant's jobs", ErrPermission))
		}
		f.Tenant = id.Tenant
	}
	if f.Limit == 0 {
		f.Limit = defaultPageSize
	}
	if req.PageToken != "" {
		f.AfterIndex, _ = strconv.ParseUint(req.PageToken, 10, 64) // validated
	}
	jobs, more := e.s.node.fsm.State().ListJobs(f)
	resp := &meghav1.ListJobsResponse{Jobs: jobs}
	if more && len(jobs) > 0 {
		resp.NextPageToken = strconv.FormatUint(jobs[len(jobs)-1].CreateIndex, 10)
	}
	return resp, nil
}

func (e *jobEndpoint) Cancel(ctx context.Context, req *meghav1.CancelJobRequest) (*meghav1.Job, error) {
	id, _ := IdentityFrom(ctx)
	cmd := &meghav1.CancelJobCommand{Id: req.Id, Reason: req.Reason, At: timestamppb.New(time.Now())}
	if id.Role != RoleAdmin {
		cmd.Tenant = id.Tenant
	}
	res, err := e.s.node.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_CancelJob{CancelJob: cmd}})
	if err != nil {
		return nil, toStatus(err)
	}
	e.s.logger.Info("job cancelled", "job_id", req.Id, "token_id", id.TokenID)
	return res.Job, nil
}

// Watch streams the job's state: first as it is, then at each change, and
// ends after a terminal state. Any node serves it from its local state,
// which follows the log.
func (e *jobEndpoint) Watch(req *meghav1.WatchJobRequest, stream meghav1.JobService_WatchServer) error {
	ctx := stream.Context()
	if _, err := e.visibleJob(ctx, req.Id); err != nil {
		return toStatus(err)
	}
	var sent uint64
	for {
		job, ok, changed := e.s.node.fsm.State().JobWatch(req.Id)
		if !ok {
			return toStatus(fmt.Errorf("%w: %s", ErrJobNotFound, req.Id))
		}
		if job.ModifyIndex != sent {
			if err := stream.Send(&meghav1.JobEvent{Job: job}); err != nil {
				return err
			}
			sent = job.ModifyIndex
		}
		if jobstate.Terminal(job.Status.GetState()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-changed:
		}
	}
}
