// Package jobspec turns YAML job specs into *meghav1.JobSpec and back, fills
// in defaults, and validates specs for both the CLI and the coordinator.
//
// The usual sequence is Parse, ApplyDefaults, Validate. Load does all three
// and reports every problem with the line and column it was written on.
// Parse checks only the shape of the YAML (known fields, value types);
// Validate checks the rules a spec must follow, and is what the coordinator
// runs on every submitted spec, whatever client sent it.
//
// # Schema
//
// Keys are snake_case, enums are lowercase strings, and every field is
// optional for Parse:
//
//	name: tiny-lm                      # lowercase letters, digits and '-'
//	kind: train                        # train | serve
//	model:
//	  builtin: transformer-tiny        # one of BuiltinModels, or
//	  command: [python3, train.py]     # the argv of your own program (a list)
//	  env: {KEY: value}                # extra environment for command
//	data:
//	  dataset: goroot                  # one of BuiltinDatasets, or
//	  uri: s3://bucket/prefix          # your own data (file, s3, http, https)
//	  seed: 1
//	  seq_len: 128
//	  batch_size: 16                   # per worker, per inner step
//	resources:
//	  workers: 3
//	  gpu_models: [H100-SXM, A100-80GB]  # empty means any model
//	  min_vram_gib: 16
//	  gpus_per_worker: 1
//	  max_price_per_gpu_hour: 1.50     # US dollars
//	  bid_selector: throughput-per-dollar  # or a mix: cheapest:0.5,reliable:0.5
//	sync:
//	  algorithm: diloco                # diloco | ddp
//	  inner_steps: 50
//	  compression: int8                # none | fp16 | int8
//	  outer_lr: 0.7
//	  outer_momentum: 0.9
//	  error_feedback: true
//	stop:                              # whichever is met first
//	  rounds: 20
//	  tokens: 1000000
//	  target_loss: 2.5
//	checkpoint:
//	  store: file://./.megha/checkpoints  # or s3://bucket/prefix?endpoint=host:9000&secure=false
//	  mirrors: [s3://backup/ckpt]      # committed only once on every store
//	  every_rounds: 5
//	  keep: 3                          # the last 3 checkpoints...
//	  keep_every: 50                   # ...and every 50th round's
//	budget:
//	  max_spend: 25.00                 # US dollars
//	labels: {team: nlp}
//
// Amounts of money are US dollars written as plain decimals such as 1.50,
// with at most six decimal places; they are read exactly (never through a
// float) into int64 millionths of a dollar, the *_micros fields of the API.
// Whole numbers are plain decimal digits, optionally grouped with '_'
// (1_000_000). A null value (key: with nothing after it, or ~) means the
// field is unset.
// Anchors, aliases, explicit tags and more than one document are rejected.
//
// # Defaults
//
// ApplyDefaults fills only fields that are still zero:
//
//	field                      default                 applies to
//	kind                       train                   every job
//	resources.workers          1                       every job
//	resources.gpus_per_worker  1                       every job
//	resources.bid_selector     throughput-per-dollar   every job
//	sync.algorithm             diloco                  train jobs
//	sync.compression           none                    train jobs
//	sync.inner_steps           50                      train jobs using diloco
//	sync.outer_lr              0.7                     train jobs using diloco
//	sync.outer_momentum        0.9                     train jobs using diloco
//	checkpoint.every_rounds    1                       train jobs
//	checkpoint.keep            3                       train jobs
//	data.seq_len               128                     jobs with a builtin model
//	data.batch_size            16                      jobs with a builtin model
//
// Left unset on purpose: checkpoint.store (empty means the coordinator's
// default store), data.seed (0 is a valid seed), resources.gpu_models (any
// model), resources.min_vram_gib (any amount), resources.max_price_per_gpu_hour
// and budget.max_spend (0 means no cap), and the stop conditions (a train job
// must choose at least one). Because a zero field is indistinguishable from an
// unset one, sync.outer_momentum cannot be set to exactly 0 for diloco.
package jobspec

import (
	"errors"
	"strings"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Field names of each section, in the order Marshal writes them.
var (
	topKeys        = []string{"name", "kind", "model", "data", "resources", "sync", "stop", "checkpoint", "budget", "labels"}
	modelKeys      = []string{"builtin", "command", "env"}
	dataKeys       = []string{"dataset", "uri", "seed", "seq_len", "batch_size"}
	resourcesKeys  = []string{"workers", "gpu_models", "min_vram_gib", "gpus_per_worker", "max_price_per_gpu_hour", "bid_selector"}
	syncKeys       = []string{"algorithm", "inner_steps", "compression", "outer_lr", "outer_momentum", "error_feedback"}
	stopKeys       = []string{"rounds", "tokens", "target_loss"}
	checkpointKeys = []string{"store", "mirrors", "every_rounds", "keep", "keep_every"}
	budgetKeys     = []string{"max_spend"}
)

// sections maps each nested section to its field names.
var sections = map[string][]string{
	"model":      modelKeys,
	"data":       dataKeys,
	"resources":  resourcesKeys,
	"sync":       syncKeys,
	"stop":       stopKeys,
	"checkpoint": checkpointKeys,
	"budget":     budgetKeys,
}

// Enum spellings, indexed by enum number; index 0 is the unspecified value,
// which has no spelling.
var (
	kindNames        = []string{"", "train", "serve"}
	algorithmNames   = []string{"", "diloco", "ddp"}
	compressionNames = []string{"", "none", "fp16", "int8"}
)

// Load parses a YAML job spec, applies defaults and validates the result.
// Every problem, from the YAML or from Validate, comes back in one
// *ParseError, with the line and column of the field when it was written in
// data (a rule broken by a default has no position).
func Load(data []byte) (*meghav1.JobSpec, error) {
	spec, pos, err := parse(data)
	if err != nil {
		return nil, err
	}
	ApplyDefaults(spec)
	err = Validate(spec)
	if err == nil {
		return spec, nil
	}
	var fes FieldErrors
	if !errors.As(err, &fes) {
		return nil, err
	}
	pe := &ParseError{}
	for _, fe := range fes {
		at := locate(pos, fe.Field)
		pe.add(Problem{Line: at.line, Column: at.col, Field: fe.Field, Msg: fe.Msg})
	}
	pe.sort()
	return nil, pe
}

// locate finds where field, or failing that the closest section containing
// it, was written.
func locate(pos map[string]position, field string) position {
	for field != "" {
		if p, ok := pos[field]; ok {
			return p
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return position{}
}

// childPath is the dotted path of key inside parent. Keys that are not plain
// identifiers (map keys chosen by the user) are quoted in brackets so that
// the path stays unambiguous: labels["megha.io/team"].
func childPath(parent, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return parent + "[" + quote(key) + "]"
	case parent == "":
		return key
	default:
		return parent + "." + key
	}
}
