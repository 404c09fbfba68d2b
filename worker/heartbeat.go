package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc/status"
)

// errReregister is returned when the coordinator no longer accepts this
// worker's epoch.
var errReregister = errors.New("worker: the coordinator asked this worker to register again")

// heartbeat keeps a heartbeat stream to the leader until ctx ends or the
// coordinator asks for a new registration. A broken stream (leader change,
// network) is reopened with the same epoch, with backoff.
func (a *Agent) heartbeat(ctx context.Context) error {
	var seq uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		seq++
		first := &meghav1.HeartbeatRequest{WorkerId: a.ID(), Epoch: a.Epoch(), Seq: seq}
		stream, resp, cancel, err := a.cfg.Client.OpenHeartbeatWithin(ctx, 30*time.Second, first)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := jitter(backoff)
			a.logger.Warn("waiting for a leader to take heartbeats", "retry_in", wait.Round(time.Millisecond),
				"error", status.Convert(err).Message())
			if !sleep(ctx, wait) {
				return nil
			}
			backoff = min(2*backoff, a.cfg.MaxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		err = a.beat(ctx, stream, resp, &seq)
		cancel()
		if errors.Is(err, errReregister) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			a.logger.Info("heartbeat stream ended; reconnecting", "error", status.Convert(err).Message())
		}
	}
	return nil
}

// beat sends heartbeats on an open stream at the interval the coordinator
// asks for. An answer missing for three intervals counts as a broken
// stream.
func (a *Agent) beat(ctx context.Context, stream interface {
	Send(*meghav1.HeartbeatRequest) error
	Recv() (*meghav1.HeartbeatResponse, error)
}, first *meghav1.HeartbeatResponse, seq *uint64) error {
	answers := make(chan *meghav1.HeartbeatResponse)
	broken := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				broken <- err
				return
			}
			select {
			case answers <- r:
			case <-done:
				return
			}
		}
	}()
	handle := func(r *meghav1.HeartbeatResponse) (time.Duration, error) {
		if r.Reregister {
			return 0, fmt.Errorf("%w: %s", errReregister, r.Reason)
		}
		return time.Duration(max(r.HeartbeatIntervalMs, 50)) * time.Millisecond, nil
	}
	interval, err := handle(first)
	if err != nil {
		return err
	}
	lastAnswer, lastStats := time.Now(), time.Time{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-broken:
			return err
		case r := <-answers:
			lastAnswer = time.Now()
			d, err := handle(r)
			if err != nil {
				return err
			}
			if d != interval {
				interval = d
				t.Reset(interval)
			}
		case now := <-t.C:
			if now.Sub(lastAnswer) > 3*interval {
				return fmt.Errorf("worker: no heartbeat answer for %v", now.Sub(lastAnswer).Round(time.Millisecond))
			}
			*seq++
			hb := &meghav1.HeartbeatRequest{WorkerId: a.ID(), Epoch: a.Epoch(), Seq: *seq}
			if a.cfg.GPUStats != nil && now.Sub(lastStats) >= a.cfg.StatsEvery {
				lastStats = now
				if gpus, err := a.cfg.GPUStats(); err != nil {
					a.logger.Warn("reading GPU stats failed", "error", err)
				} else {
					hb.Gpus = gpus
				}
			}
			if err := stream.Send(hb); err != nil {
				return err
			}
		}
	}
}
