package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
)

// clusterEndpoint serves ClusterService.
type clusterEndpoint struct {
	meghav1.UnimplementedClusterServiceServer
	s *Server
}

// members joins the Raft configuration (who votes) with the replicated
// member table (where each node serves gRPC).
func (e *clusterEndpoint) members() ([]*meghav1.Member, error) {
	n := e.s.node
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leaderID := n.raft.LeaderWithID()
	var out []*meghav1.Member
	for _, srv := range f.Configuration().Servers {
		m := &meghav1.Member{Id: string(srv.ID), RaftAddr: string(srv.Address),
			Leader: srv.ID == leaderID, Suffrage: suffrage(srv.Suffrage)}
		if rec, ok := n.fsm.State().Member(string(srv.ID)); ok {
			m.GrpcAddr = rec.GrpcAddr
		} else if string(srv.ID) == n.ID() {
			m.GrpcAddr = e.s.addr
		}
		out = append(out, m)
	}
	return out, nil
}

func suffrage(s raft.ServerSuffrage) meghav1.Suffrage {
	switch s {
	case raft.Voter:
		return meghav1.Suffrage_SUFFRAGE_VOTER
	case raft.Nonvoter:
		return meghav1.Suffrage_SUFFRAGE_NONVOTER
	case raft.Staging:
		return meghav1.Suffrage_SUFFRAGE_STAGING
	}
	return meghav1.Suffrage_SUFFRAGE_UNSPECIFIED
}

func (e *clusterEndpoint) Members(context.Context, *meghav1.MembersRequest) (*meghav1.MembersResponse, error) {
	ms, err := e.members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.MembersResponse{Members: ms}, nil
}

func (e *clusterEndpoint) Leader(context.Context, *meghav1.LeaderRequest) (*meghav1.LeaderResponse, error) {
	ms, err := e.members()
	if err != nil {
		return nil, toStatus(err)
	}
	for _, m := range ms {
		if m.Leader {
			return &meghav1.LeaderResponse{Leader: m}, nil
		}
	}
	return nil, toStatus(&notLeaderError{cause: ErrNoLeader})
}

func (e *clusterEndpoint) RaftStats(context.Context, *meghav1.RaftStatsRequest) (*meghav1.RaftStatsResponse, error) {
	return &meghav1.RaftStatsResponse{NodeId: e.s.node.ID(), Stats: e.s.node.raft.Stats()}, nil
}

func (e *clusterEndpoint) AddVoter(ctx context.Context, req *meghav1.AddVoterRequest) (*meghav1.AddVoterResponse, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	if err := n.raft.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddr), 0, timeoutOf(ctx)).Error(); err != nil {
		return nil, toStatus(n.leaderErr(fmt.Errorf("add voter %s: %w", req.Id, err)))
	}
	member := &meghav1.Member{Id: req.Id, RaftAddr: req.RaftAddr, GrpcAddr: req.GrpcAddr,
		Suffrage: meghav1.Suffrage_SUFFRAGE_VOTER}
	if _, err := n.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_UpsertMember{
		UpsertMember: &meghav1.UpsertMemberCommand{Member: member}}}); err != nil {
		return nil, toStatus(err)
	}
	e.s.logger.Info("voter added", "member_id", req.Id, "raft_addr", req.RaftAddr, "grpc_addr", req.GrpcAddr)
	ms, err := e.members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.AddVoterResponse{Members: ms}, nil
}

func (e *clusterEndpoint) RemoveVoter(ctx context.Context, req *meghav1.RemoveVoterRequest) (*meghav1.RemoveVoterResponse, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	known := false
	ms, err := e.members()
	if err != nil {
		return nil, toStatus(err)
	}
	for _, m := range ms {
		known = known || m.Id == req.Id
	}
	if !known {
		return nil, toStatus(fmt.Errorf("%w: %s is not in the Raft configuration", ErrMemberNotFound, req.Id))
	}
	if err := n.raft.RemoveServer(raft.ServerID(req.Id), 0, timeoutOf(ctx)).Error(); err != nil {
		return nil, toStatus(n.leaderErr(fmt.Errorf("remove %s: %w", req.Id, err)))
	}
	if req.Id != n.ID() { // a leader removing itself steps down; the next leader tidies up
		_, _ = n.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_RemoveMember{
			RemoveMember: &meghav1.RemoveMemberCommand{Id: req.Id}}})
	}
	e.s.logger.Info("voter removed", "member_id", req.Id)
	ms, err = e.members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.RemoveVoterResponse{Members: ms}, nil
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 10 * time.Second
}

type joinRequest struct {
	addrs []string
	token string
	tlsCA string
	req   *meghav1.AddVoterRequest
}

// joinCluster asks the cluster to add this node, following leader hints and
// retrying until ctx ends.
func joinCluster(ctx context.Context, j joinRequest, logger *slog.Logger) error {
	c, err := client.New(client.Config{Addrs: j.addrs, Token: j.token, TLSCAFile: j.tlsCA})
	if err != nil {
		return err
	}
	defer c.Close()
	ms, err := c.AddVoter(ctx, j.req)
	if err != nil {
		return fmt.Errorf("coordinator: join %v: %w", j.addrs, err)
	}
	logger.Info("joined cluster", "members", len(ms))
	return nil
}
