package coordinator

import (
	"context"
	"fmt"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// WorkerConfig tunes how the coordinator tracks workers.
type WorkerConfig struct {
	// HeartbeatInterval is what workers are told to send at.
	HeartbeatInterval time.Duration
	Detector          DetectorConfig
	// Grace is how long a new leader waits before declaring anyone lost,
	// on top of each worker's own bound: the old leader's heartbeats are
	// gone, and workers need a moment to find the new one.
	Grace time.Duration
	// CheckEvery is how often the leader looks for lost workers.
	CheckEvery time.Duration
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.Detector == (DetectorConfig{}) {
		c.Detector = DefaultDetectorConfig()
	}
	if c.Detector.FirstInterval <= 0 {
		c.Detector.FirstInterval = c.HeartbeatInterval
	}
	if c.Grace < 0 {
		c.Grace = 0
	} else if c.Grace == 0 {
		c.Grace = 2 * time.Second
	}
	if c.CheckEvery <= 0 {
		c.CheckEvery = 100 * time.Millisecond
	}
	return c
}

// trackWorkers starts every known ready worker afresh, as if it had just
// sent a heartbeat Grace from now: the grace period of a new leader. It
// runs before the leader takes any heartbeat, so that none is refused for
// want of tracking.
func (n *Node) trackWorkers() {
	start := time.Now()
	n.detector.Reset()
	for _, w := range n.fsm.State().Workers(meghav1.WorkerState_WORKER_STATE_READY) {
		n.detector.Track(w.Id, w.Epoch, start.Add(n.cfg.Workers.Grace))
	}
}

// detectFailures is a leader duty: every CheckEvery it proposes WorkerLost
// for the workers the detector suspects.
func (n *Node) detectFailures(ctx context.Context) {
	t := time.NewTicker(n.cfg.Workers.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, s := range n.detector.Suspects(now) {
				n.declareLost(ctx, s)
			}
		}
	}
}

func (n *Node) declareLost(ctx context.Context, s Suspect) {
	reason := fmt.Sprintf("no heartbeat for %v (phi %.1f)", s.Silent.Round(time.Millisecond), s.Phi)
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := n.Apply(actx, &meghav1.Command{Cmd: &meghav1.Command_WorkerLost{WorkerLost: &meghav1.WorkerLostCommand{
		Id: s.ID, Epoch: s.Epoch, Reason: reason, At: timestamppb.Now()}}})
	switch {
	case err == nil:
		n.logger.Warn("worker lost", "worker_id", s.ID, "epoch", s.Epoch, "reason", reason)
		n.detector.Forget(s.ID)
	case isStale(err):
		n.detector.Forget(s.ID) // it left, or registered again meanwhile
	default:
		n.logger.Warn("declaring worker lost failed; will retry", "worker_id", s.ID, "error", err)
	}
}
