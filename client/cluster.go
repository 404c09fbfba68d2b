package client

import (
	"context"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
)

// Members lists the coordinator nodes.
func (c *Client) Members(ctx context.Context) ([]*meghav1.Member, error) {
	var resp *meghav1.MembersResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewClusterServiceClient(cc).Members(ctx, &meghav1.MembersRequest{})
		return err
	})
	return resp.GetMembers(), err
}

// Leader returns the current leader.
func (c *Client) Leader(ctx context.Context) (*meghav1.Member, error) {
	var resp *meghav1.LeaderResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewClusterServiceClient(cc).Leader(ctx, &meghav1.LeaderRequest{})
		return err
	})
	return resp.GetLeader(), err
}

// RaftStats returns the Raft statistics of the node the client reaches.
func (c *Client) RaftStats(ctx context.Context) (*meghav1.RaftStatsResponse, error) {
	var resp *meghav1.RaftStatsResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewClusterServiceClient(cc).RaftStats(ctx, &meghav1.RaftStatsRequest{})
		return err
	})
	return resp, err
}

// AddVoter adds a coordinator node as a voter.
func (c *Client) AddVoter(ctx context.Context, req *meghav1.AddVoterRequest) ([]*meghav1.Member, error) {
	var resp *meghav1.AddVoterResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewClusterServiceClient(cc).AddVoter(ctx, req)
		return err
	})
	return resp.GetMembers(), err
}

// RemoveVoter removes a coordinator node from the cluster.
func (c *Client) RemoveVoter(ctx context.Context, id string) ([]*meghav1.Member, error) {
	var resp *meghav1.RemoveVoterResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewClusterServiceClient(cc).RemoveVoter(ctx, &meghav1.RemoveVoterRequest{Id: id})
		return err
	})
	return resp.GetMembers(), err
}
