package coordinator

import (
	"fmt"
	"math"
	"slices"
	"sort"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Worker returns a copy of one worker.
func (s *State) Worker(id string) (*meghav1.Worker, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, ok := s.workers[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(w).(*meghav1.Worker), true
}

// Workers returns copies of the workers in the given states (all when
// none are given), sorted by ID.
func (s *State) Workers(states ...meghav1.WorkerState) []*meghav1.Worker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*meghav1.Worker, 0, len(s.workers))
	for _, w := range s.workers {
		if len(states) > 0 && !slices.Contains(states, w.State) {
			continue
		}
		out = append(out, proto.Clone(w).(*meghav1.Worker))
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Id < out[b].Id })
	return out
}

// Throughput returns the measured-throughput history per GPU model and
// probe, sorted by model.
func (s *State) Throughput() []*meghav1.GPUModelThroughput {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*meghav1.GPUModelThroughput, 0, len(s.throughput))
	for _, t := range s.throughput {
		out = append(out, proto.Clone(t).(*meghav1.GPUModelThroughput))
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Model != out[b].Model {
			return out[a].Model < out[b].Model
		}
		return out[a].Probe < out[b].Probe
	})
	return out
}

func (s *State) applyRegisterWorker(c *meghav1.RegisterWorkerCommand) (*ApplyResult, error) {
	w := c.GetWorker()
	if w.GetId() == "" {
		return nil, fmt.Errorf("%w: worker without an ID", ErrInvalid)
	}
	var epoch uint64 = 1
	if prev, ok := s.workers[w.Id]; ok {
		epoch = prev.Epoch + 1
		// Whatever the old epoch ran is lost: a worker that comes back
		// does not get its old work back silently.
		s.loseWorkerTasksLocked(s.index, w.Id, w.RegisteredAt)
	}
	w.Epoch = epoch
	w.State = meghav1.WorkerState_WORKER_STATE_READY
	w.LostAt, w.LostReason, w.LastHeartbeat = nil, "", nil
	s.workers[w.Id] = w
	s.recordThroughputLocked(w)
	return &ApplyResult{Worker: w}, nil
}

// recordThroughputLocked adds a worker's measured throughput to the
// history of its GPU model. A worker's rate is divided among its GPUs, so
// the history is per GPU.
func (s *State) recordThroughputLocked(w *meghav1.Worker) {
	t := w.GetThroughput()
	if t == nil || len(w.Gpus) == 0 || !(t.SamplesPerSecond > 0) || math.IsInf(t.SamplesPerSecond, 0) {
		return
	}
	model := w.Gpus[0].Model
	if model == "" {
		model = "unknown"
	}
	perGPU := t.SamplesPerSecond / float64(len(w.Gpus))
	key := model + "\x00" + t.Probe
	h, ok := s.throughput[key]
	if !ok {
		h = &meghav1.GPUModelThroughput{Model: model, Probe: t.Probe, Min: perGPU, Max: perGPU}
		s.throughput[key] = h
	}
	h.Mean = (h.Mean*float64(h.Samples) + perGPU) / float64(h.Samples+1)
	h.Samples++
	h.Min, h.Max, h.Last = math.Min(h.Min, perGPU), math.Max(h.Max, perGPU), perGPU
}

func (s *State) applyWorkerLost(c *meghav1.WorkerLostCommand) (*ApplyResult, error) {
	return s.endWorkerLocked(c.GetId(), c.GetEpoch(), meghav1.WorkerState_WORKER_STATE_LOST, c.Reason, c.At)
}

func (s *State) applyWorkerLeft(c *meghav1.WorkerLeftCommand) (*ApplyResult, error) {
	return s.endWorkerLocked(c.GetId(), c.GetEpoch(), meghav1.WorkerState_WORKER_STATE_LEFT, c.Reason, c.At)
}

// endWorkerLocked ends a worker's epoch (lost or left); its live tasks are
// lost with it.
func (s *State) endWorkerLocked(id string, epoch uint64, st meghav1.WorkerState, reason string, at *timestamppb.Timestamp) (*ApplyResult, error) {
	w, err := s.liveWorkerLocked(id, epoch)
	if err != nil {
		return nil, err
	}
	w = proto.Clone(w).(*meghav1.Worker)
	w.State, w.LostAt, w.LostReason = st, at, reason
	s.workers[w.Id] = w
	s.loseWorkerTasksLocked(s.index, w.Id, at)
	return &ApplyResult{Worker: w}, nil
}

// liveWorkerLocked returns the worker if it is ready in exactly this epoch.
func (s *State) liveWorkerLocked(id string, epoch uint64) (*meghav1.Worker, error) {
	w, ok := s.workers[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrWorkerNotFound, id)
	}
	if w.Epoch != epoch || w.State != meghav1.WorkerState_WORKER_STATE_READY {
		return nil, fmt.Errorf("%w: %s is in epoch %d (%s), not ready in epoch %d",
			ErrStaleEpoch, id, w.Epoch, w.State, epoch)
	}
	return w, nil
}

// liveWorker returns an error unless the worker is ready in this epoch.
func (s *State) liveWorker(id string, epoch uint64) (*meghav1.Worker, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.liveWorkerLocked(id, epoch)
}
