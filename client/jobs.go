package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// NewRequestID returns a random request ID for Submit.
func NewRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Submit submits a job. requestID makes retries idempotent; empty means a
// fresh random one (safe within this call's own retries).
func (c *Client) Submit(ctx context.Context, spec *meghav1.JobSpec, requestID string) (*meghav1.SubmitJobResponse, error) {
	if requestID == "" {
		requestID = NewRequestID()
	}
	req := &meghav1.SubmitJobRequest{Spec: spec, RequestId: requestID}
	var resp *meghav1.SubmitJobResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewJobServiceClient(cc).Submit(ctx, req)
		return err
	})
	return resp, err
}

// Get returns one job.
func (c *Client) Get(ctx context.Context, id string, allowStale bool) (*meghav1.Job, error) {
	var job *meghav1.Job
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		job, err = meghav1.NewJobServiceClient(cc).Get(ctx, &meghav1.GetJobRequest{Id: id, AllowStale: allowStale})
		return err
	})
	return job, err
}

// List returns one page of jobs.
func (c *Client) List(ctx context.Context, req *meghav1.ListJobsRequest) (*meghav1.ListJobsResponse, error) {
	var resp *meghav1.ListJobsResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewJobServiceClient(cc).List(ctx, req)
		return err
	})
	return resp, err
}

// ListAll follows pages until the last.
func (c *Client) ListAll(ctx context.Context, req *meghav1.ListJobsRequest) ([]*meghav1.Job, error) {
	var all []*meghav1.Job
	page := proto.Clone(req).(*meghav1.ListJobsRequest)
	page.PageToken = ""
	for {
		resp, err := c.List(ctx, page)
		if err != nil {
			return nil, err
		}
		all = append(all, resp.Jobs...)
		if resp.NextPageToken == "" {
			return all, nil
		}
		page.PageToken = resp.NextPageToken
	}
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id, reason string) (*meghav1.Job, error) {
	var job *meghav1.Job
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		job, err = meghav1.NewJobServiceClient(cc).Cancel(ctx, &meghav1.CancelJobRequest{Id: id, Reason: reason})
		return err
	})
	return job, err
}

// Watch calls fn with each new state of the job until the job finishes,
// fn returns an error, or ctx ends.
func (c *Client) Watch(ctx context.Context, id string, fn func(*meghav1.Job) error) error {
	var lastIndex uint64
	return c.stream(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		stream, err := meghav1.NewJobServiceClient(cc).Watch(ctx, &meghav1.WatchJobRequest{Id: id})
		if err != nil {
			return err
		}
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if ev.Job.ModifyIndex <= lastIndex {
				continue // seen before a reconnect
			}
			lastIndex = ev.Job.ModifyIndex
			if err := fn(ev.Job); err != nil {
				return err
			}
		}
	})
}

// ListTasks returns a job's tasks.
func (c *Client) ListTasks(ctx context.Context, jobID string) ([]*meghav1.Task, error) {
	var resp *meghav1.ListTasksResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewJobServiceClient(cc).ListTasks(ctx, &meghav1.ListTasksRequest{JobId: jobID})
		return err
	})
	return resp.GetTasks(), err
}

// Logs streams a task's output into fn until it ends (or, with follow,
// until ctx ends).
func (c *Client) Logs(ctx context.Context, req *meghav1.TaskLogsRequest, fn func(*meghav1.LogChunk) error) error {
	return c.stream(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := meghav1.NewJobServiceClient(cc).Logs(ctx, req)
		if err != nil {
			return err
		}
		for {
			ch, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := fn(ch); err != nil {
				return err
			}
		}
	})
}

// ListLeases returns the market leases held for a job (every job's, for
// an admin, when jobID is empty).
func (c *Client) ListLeases(ctx context.Context, jobID string) ([]*meghav1.Lease, error) {
	var resp *meghav1.ListLeasesResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewJobServiceClient(cc).ListLeases(ctx, &meghav1.ListLeasesRequest{JobId: jobID})
		return err
	})
	return resp.GetLeases(), err
}
