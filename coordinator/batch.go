package coordinator

import (
	"context"
	"fmt"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Group commit of submits.
//
// Every Raft entry costs the leader and each follower a fixed amount of
// work (futures, channels, encoding, an FSM dispatch) whatever its size.
// Under load, submits that arrive while earlier ones are being committed
// are gathered into one SubmitJobs entry, so that cost is paid once per
// batch. With no load a submit is alone in its batch and waits for nobody:
// a worker takes whatever is queued the moment it is free.
const (
	batchWorkers = 2   // batches in flight at once; fewer means larger batches
	batchMax     = 128 // submits per entry
)

type pendingSubmit struct {
	ctx  context.Context
	cmd  *meghav1.SubmitJobCommand
	done chan ItemResult
}

type submitBatcher struct {
	node  *Node
	queue chan *pendingSubmit
	stop  <-chan struct{}
}

func newSubmitBatcher(n *Node, stop <-chan struct{}) *submitBatcher {
	b := &submitBatcher{node: n, queue: make(chan *pendingSubmit, batchWorkers*batchMax), stop: stop}
	for i := 0; i < batchWorkers; i++ {
		go b.work()
	}
	return b
}

// submit applies one submit through the next batch and returns its own
// outcome.
func (b *submitBatcher) submit(ctx context.Context, cmd *meghav1.SubmitJobCommand) (*ApplyResult, error) {
	if err := b.node.checkLeader(false); err != nil {
		return nil, err
	}
	p := &pendingSubmit{ctx: ctx, cmd: cmd, done: make(chan ItemResult, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.stop:
		return nil, ErrNotLeader
	}
	select {
	case r := <-p.done:
		return r.Result, r.Err
	case <-ctx.Done():
		// The submit may still commit; a retry with the same request ID
		// finds it.
		return nil, ctx.Err()
	}
}

func (b *submitBatcher) work() {
	batch := make([]*pendingSubmit, 0, batchMax)
	for {
		select {
		case <-b.stop:
			return
		case p := <-b.queue:
			batch = append(batch[:0], p)
		}
	drain:
		for len(batch) < batchMax {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		b.commit(batch)
	}
}

// commit applies one batch, skipping submits whose callers have gone.
func (b *submitBatcher) commit(batch []*pendingSubmit) {
	live := batch[:0]
	cmd := &meghav1.SubmitJobsCommand{Jobs: make([]*meghav1.SubmitJobCommand, 0, len(batch))}
	for _, p := range batch {
		if p.ctx.Err() != nil {
			continue
		}
		live = append(live, p)
		cmd.Jobs = append(cmd.Jobs, p.cmd)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.node.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_SubmitJobs{SubmitJobs: cmd}})
	if err == nil && len(res.Items) != len(live) {
		err = fmt.Errorf("coordinator: group commit of %d submits returned %d outcomes", len(live), len(res.Items))
	}
	for i, p := range live {
		if err != nil {
			p.done <- ItemResult{Err: err}
			continue
		}
		p.done <- res.Items[i]
	}
}
