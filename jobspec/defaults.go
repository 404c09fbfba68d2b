package jobspec

import (
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Defaults, as listed in the package documentation.
const (
	defaultWorkers       = 1
	defaultGPUsPerWorker = 1
	defaultBidSelector   = "throughput-per-dollar"
	defaultInnerSteps    = 50
	defaultOuterLR       = 0.7
	defaultOuterMomentum = 0.9
	defaultEveryRounds   = 1
	defaultKeep          = 3
	defaultSeqLen        = 128
	defaultBatchSize     = 16
)

// ApplyDefaults fills the fields of spec that are still zero with the
// defaults listed in the package documentation, creating the sections it
// needs. Fields already set are left alone, so applying defaults twice is
// the same as once. A nil spec is left alone.
func ApplyDefaults(spec *meghav1.JobSpec) {
	if spec == nil {
		return
	}
	if spec.Kind == meghav1.JobKind_JOB_KIND_UNSPECIFIED {
		spec.Kind = meghav1.JobKind_JOB_KIND_TRAIN
	}
	train := spec.Kind == meghav1.JobKind_JOB_KIND_TRAIN

	if spec.Resources == nil {
		spec.Resources = &meghav1.Resources{}
	}
	r := spec.Resources
	if r.Workers == 0 {
		r.Workers = defaultWorkers
	}
	if r.GpusPerWorker == 0 {
		r.GpusPerWorker = defaultGPUsPerWorker
	}
	if r.BidSelector == "" {
		r.BidSelector = defaultBidSelector
	}

	if spec.GetModel().GetBuiltin() != "" {
		if spec.Data == nil {
			spec.Data = &meghav1.DataSpec{}
		}
		if spec.Data.SeqLen == 0 {
			spec.Data.SeqLen = defaultSeqLen
		}
		if spec.Data.BatchSize == 0 {
			spec.Data.BatchSize = defaultBatchSize
		}
	}

	if !train {
		return
	}
	if spec.Sync == nil {
		spec.Sync = &meghav1.SyncSpec{}
	}
	s := spec.Sync
	if s.Algorithm == meghav1.SyncAlgorithm_SYNC_ALGORITHM_UNSPECIFIED {
		s.Algorithm = meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO
	}
	if s.Compression == meghav1.Compression_COMPRESSION_UNSPECIFIED {
		s.Compression = meghav1.Compression_COMPRESSION_NONE
	}
	if s.Algorithm == meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO {
		if s.InnerSteps == 0 {
			s.InnerSteps = defaultInnerSteps
		}
		if s.OuterLr == 0 {
			s.OuterLr = defaultOuterLR
		}
		if s.OuterMomentum == 0 {
			s.OuterMomentum = defaultOuterMomentum
		}
	}

	if spec.Checkpoint == nil {
		spec.Checkpoint = &meghav1.CheckpointSpec{}
	}
	c := spec.Checkpoint
	if c.EveryRounds == 0 {
		c.EveryRounds = defaultEveryRounds
	}
	if c.Keep == 0 {
		c.Keep = defaultKeep
	}
}
