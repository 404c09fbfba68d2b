package coordinator

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/proto"
)

// monitorLeadership runs leader-only duties while this node leads: it
// starts them after a barrier (so the FSM holds everything committed in
// earlier terms) and stops them when leadership is lost.
//
//	follower ──elected──▶ barrier ──ok──▶ leader duties (ready) ──lost──▶ follower
//	                         │
//	                         └─fails──▶ retry while still leader
func (n *Node) monitorLeadership() {
	defer close(n.done)
	var cancel context.CancelFunc
	stopDuties := func() {
		n.ready.Store(false)
		if cancel != nil {
			cancel()
			cancel = nil
		}
	}
	defer stopDuties()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.notifyCh:
			stopDuties()
			if !isLeader {
				n.logger.Info("lost leadership")
				continue
			}
			ctx, c := context.WithCancel(context.Background())
			cancel = c
			go n.establishLeadership(ctx)
		}
	}
}

// establishLeadership waits for a barrier, records this node's addresses,
// then marks the node ready to serve writes and fresh reads.
func (n *Node) establishLeadership(ctx context.Context) {
	start := time.Now()
	for {
		if ctx.Err() != nil {
			return
		}
		err := n.raft.Barrier(5 * time.Second).Error()
		if err == nil {
			break
		}
		n.logger.Warn("barrier after election failed", "error", err)
		if n.raft.State() != raft.Leader {
			return
		}
	}
	n.trackWorkers()
	n.ready.Store(true)
	n.logger.Info("leading", "barrier_ms", time.Since(start).Milliseconds())
	go n.detectFailures(ctx)
	go n.schedule(ctx)
	go n.driveRounds(ctx)
	if n.cfg.Market.Market != nil {
		go newLeaseManager(n, n.cfg.Market).run(ctx)
	}
	n.ensureMember(ctx)
}

// ensureMember records this node's gRPC address in the replicated member
// table, so followers can point clients at it.
func (n *Node) ensureMember(ctx context.Context) {
	want := &meghav1.Member{Id: n.cfg.ID, RaftAddr: n.RaftAddr(), GrpcAddr: n.cfg.GRPCAddr,
		Suffrage: meghav1.Suffrage_SUFFRAGE_VOTER}
	if have, ok := n.fsm.State().Member(n.cfg.ID); ok && proto.Equal(have, want) {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := &meghav1.Command{Cmd: &meghav1.Command_UpsertMember{UpsertMember: &meghav1.UpsertMemberCommand{Member: want}}}
	if _, err := n.Apply(actx, cmd); err != nil {
		n.logger.Warn("recording own address failed", "error", err)
	}
}
