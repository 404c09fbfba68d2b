package jobspec

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// validSpec is a defaulted spec that passes Validate; tests break one rule
// at a time.
func validSpec() *meghav1.JobSpec {
	spec := &meghav1.JobSpec{
		Name:      "tiny-lm",
		Model:     &meghav1.ModelSpec{Builtin: "transformer-tiny"},
		Data:      &meghav1.DataSpec{Dataset: "goroot"},
		Resources: &meghav1.Resources{Workers: 3, GpuModels: []string{"H100-SXM", "RTX4090"}, MaxPricePerGpuHourMicros: 2_000_000},
		Stop:      &meghav1.StopCondition{Rounds: 20},
		Budget:    &meghav1.Budget{MaxSpendMicros: 25_000_000},
		Labels:    map[string]string{"team": "nlp"},
	}
	ApplyDefaults(spec)
	return spec
}

func TestValidSpecs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*meghav1.JobSpec)
	}{
		{"base", func(*meghav1.JobSpec) {}},
		{"command model without data", func(s *meghav1.JobSpec) {
			s.Model = &meghav1.ModelSpec{Command: []string{"python3", "train.py"}, Env: map[string]string{"HF_HOME": "/tmp/hf", "_X1": ""}}
			s.Data = nil
		}},
		{"uri instead of dataset", func(s *meghav1.JobSpec) { s.Data.Dataset, s.Data.Uri = "", "s3://bucket/corpus" }},
		{"ddp", func(s *meghav1.JobSpec) {
			s.Sync = &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP, InnerSteps: 1, Compression: meghav1.Compression_COMPRESSION_FP16, ErrorFeedback: true}
		}},
		{"weighted bid selector", func(s *meghav1.JobSpec) { s.Resources.BidSelector = "cheapest:0.5, reliable:1.5,spread" }},
		{"zero price and budget mean no cap", func(s *meghav1.JobSpec) { s.Resources.MaxPricePerGpuHourMicros, s.Budget = 0, nil }},
		{"largest price", func(s *meghav1.JobSpec) { s.Resources.MaxPricePerGpuHourMicros = 1000 * MicrosPerUSD }},
		{"target loss alone", func(s *meghav1.JobSpec) { s.Stop = &meghav1.StopCondition{TargetLoss: 2.5} }},
		{"tokens alone", func(s *meghav1.JobSpec) { s.Stop = &meghav1.StopCondition{Tokens: 1} }},
		{"checkpoint stores", func(s *meghav1.JobSpec) { s.Checkpoint.Store = "s3://ckpt/megha?endpoint=localhost:9000" }},
		{"relative file store", func(s *meghav1.JobSpec) { s.Checkpoint.Store = "file://./megha-data/checkpoints" }},
		{"63-character name", func(s *meghav1.JobSpec) { s.Name = "a" + strings.Repeat("b-", 30) + "cd" }},
		{"label keys", func(s *meghav1.JobSpec) {
			s.Labels = map[string]string{"megha.io/team": "nlp", "a_b-c": strings.Repeat("v", 256)}
		}},
		{"serve job", func(s *meghav1.JobSpec) {
			s.Kind = meghav1.JobKind_JOB_KIND_SERVE
			s.Sync, s.Stop, s.Checkpoint = nil, nil, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := validSpec()
			tt.mutate(spec)
			if err := Validate(spec); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*meghav1.JobSpec)
		field  string
		msg    string // the whole message, or a prefix ending in "..."
	}{
		{"no name", func(s *meghav1.JobSpec) { s.Name = "" }, "name",
			"required; set name to a short identifier: lowercase letters, digits and '-', starting with a letter, such as tiny-lm"},
		{"long name", func(s *meghav1.JobSpec) { s.Name = strings.Repeat("a", 64) }, "name", "is 64 characters long; use at most 63"},
		{"name with capitals", func(s *meghav1.JobSpec) { s.Name = "Tiny LM" }, "name",
			`"Tiny LM" is not a valid name; use lowercase letters, digits and '-', starting with a letter, such as tiny-lm (try "tiny-lm")`},
		{"name starting with a digit", func(s *meghav1.JobSpec) { s.Name = "1st" }, "name",
			`"1st" is not a valid name; use lowercase letters, digits and '-', starting with a letter, such as tiny-lm (try "st")`},
		{"name ending in a dash", func(s *meghav1.JobSpec) { s.Name = "tiny-" }, "name", `"tiny-" must not end with '-'; try "tiny"`},
		{"no kind", func(s *meghav1.JobSpec) { s.Kind = 0 }, "kind", "required; set kind to train or serve"},
		{"unknown kind", func(s *meghav1.JobSpec) { s.Kind = 9 }, "kind", "must be train or serve, got unknown kind 9"},
		{"no model", func(s *meghav1.JobSpec) { s.Model = nil }, "model",
			"required; set model.builtin to transformer-tiny, transformer-small or mlp-tiny, or model.command to your program's argv"},
		{"both models", func(s *meghav1.JobSpec) { s.Model.Command = []string{"python3"} }, "model",
			"set either model.builtin or model.command, not both"},
		{"unknown builtin", func(s *meghav1.JobSpec) { s.Model.Builtin = "transformer-smal" }, "model.builtin", `unknown model "transformer-smal"; did you mean "transformer-small"?`},
		{"unknown builtin far off", func(s *meghav1.JobSpec) { s.Model.Builtin = "gpt5" }, "model.builtin",
			`unknown model "gpt5"; use transformer-tiny, transformer-small or mlp-tiny, or model.command to run your own program`},
		{"empty argument", func(s *meghav1.JobSpec) { s.Model = &meghav1.ModelSpec{Command: []string{"python3", ""}} }, "model.command[1]", "empty argument; remove it"},
		{"NUL in argument", func(s *meghav1.JobSpec) { s.Model = &meghav1.ModelSpec{Command: []string{"a\x00b"}} }, "model.command[0]",
			"contains a NUL byte, which no command line can carry"},
		{"too many arguments", func(s *meghav1.JobSpec) { s.Model = &meghav1.ModelSpec{Command: make257()} }, "model.command",
			"has 257 arguments; at most 256 are allowed (pass the rest in a file)"},
		{"bad env name", func(s *meghav1.JobSpec) {
			s.Model = &meghav1.ModelSpec{Command: []string{"x"}, Env: map[string]string{"1X": "y"}}
		}, `model.env.1X`, `"1X" is not a valid environment variable name; use letters, digits and '_', not starting with a digit, such as BATCH_SIZE`},
		{"env name with a dot", func(s *meghav1.JobSpec) {
			s.Model = &meghav1.ModelSpec{Command: []string{"x"}, Env: map[string]string{"A.B": "y"}}
		}, `model.env["A.B"]`, `"A.B" is not a valid environment variable name...`},
		{"env with builtin", func(s *meghav1.JobSpec) { s.Model.Env = map[string]string{"A": "b"} }, "model.env",
			"applies only to model.command; the builtin models take no environment, so remove it"},
		{"no data for builtin", func(s *meghav1.JobSpec) { s.Data.Dataset = "" }, "data",
			"a builtin model needs data; set data.dataset to synthetic or goroot, or data.uri to your own data"},
		{"dataset and uri", func(s *meghav1.JobSpec) { s.Data.Uri = "s3://b/p" }, "data", "set either data.dataset or data.uri, not both"},
		{"unknown dataset", func(s *meghav1.JobSpec) { s.Data.Dataset = "wikipedia" }, "data.dataset",
			`unknown dataset "wikipedia"; use synthetic or goroot, or set data.uri to your own data instead`},
		{"uri without scheme", func(s *meghav1.JobSpec) { s.Data.Dataset, s.Data.Uri = "", "/data/corpus" }, "data.uri",
			`"/data/corpus" has no scheme; write it like file:///path/to/dir, s3://bucket/prefix or https://host/path`},
		{"uri scheme", func(s *meghav1.JobSpec) { s.Data.Dataset, s.Data.Uri = "", "gs://b/p" }, "data.uri",
			`scheme "gs" is not supported here; use file, s3, http or https; write it like file:///path/to/dir, s3://bucket/prefix or https://host/path`},
		{"s3 without bucket", func(s *meghav1.JobSpec) { s.Data.Dataset, s.Data.Uri = "", "s3:///prefix" }, "data.uri", `"s3:///prefix" names no bucket; ...`},
		{"http without host", func(s *meghav1.JobSpec) { s.Data.Dataset, s.Data.Uri = "", "https:///x" }, "data.uri", `"https:///x" names no host; ...`},
		{"bad uri", func(s *meghav1.JobSpec) { s.Data.Dataset, s.Data.Uri = "", "http://a b\x7f" }, "data.uri", `"http://a b\x7f" is not a valid URI; ...`},
		{"zero seq_len", func(s *meghav1.JobSpec) { s.Data.SeqLen = 0 }, "data.seq_len",
			"must be between 1 and 65536, got 0; set data.seq_len to the tokens per training sequence; 128 suits the tiny models"},
		{"huge batch", func(s *meghav1.JobSpec) { s.Data.BatchSize = 1 << 20 }, "data.batch_size",
			"must be between 1 and 65536, got 1048576; set data.batch_size to the sequences per worker per inner step"},
		{"zero workers", func(s *meghav1.JobSpec) { s.Resources.Workers = 0 }, "resources.workers",
			"must be between 1 and 1024, got 0; set resources.workers to the number of machines to lease"},
		{"too many workers", func(s *meghav1.JobSpec) { s.Resources.Workers = 1025 }, "resources.workers",
			"must be between 1 and 1024, got 1025; set resources.workers to the number of machines to lease"},
		{"too many GPUs per worker", func(s *meghav1.JobSpec) { s.Resources.GpusPerWorker = 17 }, "resources.gpus_per_worker",
			"must be between 1 and 16, got 17; set resources.gpus_per_worker to the number of GPUs each machine needs"},
		{"too much VRAM", func(s *meghav1.JobSpec) { s.Resources.MinVramGib = 2048 }, "resources.min_vram_gib",
			"must be at most 1024, got 2048; it is the least memory each GPU needs, in GiB"},
		{"empty GPU model", func(s *meghav1.JobSpec) { s.Resources.GpuModels = []string{""} }, "resources.gpu_models[0]",
			"empty model name; remove it, or write a name such as H100-SXM"},
		{"GPU model with a space", func(s *meghav1.JobSpec) { s.Resources.GpuModels = []string{"H100 SXM"} }, "resources.gpu_models[0]",
			`"H100 SXM" contains spaces or control characters; write the catalog name, such as H100-SXM`},
		{"duplicate GPU model", func(s *meghav1.JobSpec) { s.Resources.GpuModels = []string{"L40S", "A10", "L40S"} }, "resources.gpu_models[2]",
			`"L40S" is already listed at resources.gpu_models[0]; remove one`},
		{"GPU model by a loose name", func(s *meghav1.JobSpec) { s.Resources.GpuModels = []string{"h100"} }, "resources.gpu_models[0]",
			`no GPU model is called "h100"; did you mean "H100-SXM"? (models are named by catalog ID)`},
		{"unknown GPU model", func(s *meghav1.JobSpec) { s.Resources.GpuModels = []string{"B200"} }, "resources.gpu_models[0]",
			`no GPU model is called "B200"; known models: H200, H100-SXM, H100-PCIe, L40S, A100-80GB, A100-40GB, RTX4090, A6000, V100, A10, RTX3090, T4`},
		{"too many GPU models", func(s *meghav1.JobSpec) { s.Resources.GpuModels = gpuModels(33) }, "resources.gpu_models",
			"lists 33 models; at most 32 are allowed (leave it empty to accept any model)"},
		{"negative price", func(s *meghav1.JobSpec) { s.Resources.MaxPricePerGpuHourMicros = -1 }, "resources.max_price_per_gpu_hour",
			"must not be negative, got -0.000001; set the most you will pay per GPU-hour in US dollars, or 0 for no cap"},
		{"price too high", func(s *meghav1.JobSpec) { s.Resources.MaxPricePerGpuHourMicros = 1000*MicrosPerUSD + 1 }, "resources.max_price_per_gpu_hour",
			"must be at most 1000.00 US dollars per GPU-hour, got 1000.000001; check for a misplaced decimal point"},
		{"no bid selector", func(s *meghav1.JobSpec) { s.Resources.BidSelector = "" }, "resources.bid_selector",
			"empty bid selector; use one of cheapest, throughput-per-dollar, reliable, nearest or spread, or a weighted mix such as cheapest:0.5,reliable:0.5"},
		{"bad bid selector weight", func(s *meghav1.JobSpec) { s.Resources.BidSelector = "cheapest:0,reliable:1" }, "resources.bid_selector",
			"the weight of cheapest must be a positive number, got 0"},
		{"no sync algorithm", func(s *meghav1.JobSpec) { s.Sync.Algorithm = 0 }, "sync.algorithm",
			"required; set sync.algorithm to diloco (sync every few steps) or ddp (sync every step)"},
		{"unknown compression", func(s *meghav1.JobSpec) { s.Sync.Compression = 7 }, "sync.compression", "must be none, fp16 or int8, got unknown compression 7"},
		{"zero inner steps", func(s *meghav1.JobSpec) { s.Sync.InnerSteps = 0 }, "sync.inner_steps",
			"must be between 1 and 100000, got 0; it is the number of local steps between outer syncs (50 is a good start)"},
		{"ddp with inner steps", func(s *meghav1.JobSpec) {
			s.Sync = &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP, InnerSteps: 50, Compression: meghav1.Compression_COMPRESSION_NONE}
		}, "sync.inner_steps", "ddp synchronizes gradients after every step, so inner_steps must be 0 or 1, got 50; remove it, or use algorithm: diloco to take local steps between syncs"},
		{"ddp with outer lr", func(s *meghav1.JobSpec) {
			s.Sync.Algorithm, s.Sync.InnerSteps, s.Sync.OuterMomentum = meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP, 0, 0
		}, "sync.outer_lr",
			"applies only to diloco, got 0.7 with ddp; remove it"},
		{"zero outer lr", func(s *meghav1.JobSpec) { s.Sync.OuterLr = 0 }, "sync.outer_lr", "must be greater than 0 and at most 10, got 0; 0.7 is the usual value"},
		{"huge outer lr", func(s *meghav1.JobSpec) { s.Sync.OuterLr = 11 }, "sync.outer_lr", "must be greater than 0 and at most 10, got 11; 0.7 is the usual value"},
		{"NaN outer lr", func(s *meghav1.JobSpec) { s.Sync.OuterLr = math.NaN() }, "sync.outer_lr", "must be greater than 0 and at most 10, got NaN; 0.7 is the usual value"},
		{"momentum of 1", func(s *meghav1.JobSpec) { s.Sync.OuterMomentum = 1 }, "sync.outer_momentum", "must be at least 0 and less than 1, got 1; 0.9 is the usual value"},
		{"negative momentum", func(s *meghav1.JobSpec) { s.Sync.OuterMomentum = -0.5 }, "sync.outer_momentum", "must be at least 0 and less than 1, got -0.5; 0.9 is the usual value"},
		{"infinite momentum", func(s *meghav1.JobSpec) { s.Sync.OuterMomentum = math.Inf(-1) }, "sync.outer_momentum", "must be at least 0 and less than 1, got -Inf; 0.9 is the usual value"},
		{"error feedback without compression", func(s *meghav1.JobSpec) { s.Sync.ErrorFeedback = true }, "sync.error_feedback",
			"corrects the error of lossy compression, and there is none; set sync.compression to fp16 or int8, or remove error_feedback"},
		{"no stop condition", func(s *meghav1.JobSpec) { s.Stop = nil }, "stop",
			"a train job of a built-in model needs at least one stop condition; set stop.rounds, stop.tokens or stop.target_loss"},
		{"negative target loss", func(s *meghav1.JobSpec) { s.Stop.TargetLoss = -1 }, "stop.target_loss",
			"must be greater than 0, got -1; it is the training loss at which to stop, such as 2.5"},
		{"infinite target loss", func(s *meghav1.JobSpec) { s.Stop.TargetLoss = math.Inf(1) }, "stop.target_loss",
			"must be a finite number, got +Inf; it is the training loss at which to stop, such as 2.5"},
		{"serve job with stop", func(s *meghav1.JobSpec) { s.Kind, s.Sync, s.Checkpoint = meghav1.JobKind_JOB_KIND_SERVE, nil, nil }, "stop",
			"a serve job runs until it is cancelled; remove stop"},
		{"serve job with sync", func(s *meghav1.JobSpec) { s.Kind, s.Stop = meghav1.JobKind_JOB_KIND_SERVE, nil }, "sync",
			"only train jobs sync replicas; remove sync from a serve job"},
		{"checkpoint store scheme", func(s *meghav1.JobSpec) { s.Checkpoint.Store = "https://x/y" }, "checkpoint.store",
			`scheme "https" is not supported here; use file or s3; write it like file:///path/to/dir or s3://bucket/prefix`},
		{"checkpoint every 0 rounds", func(s *meghav1.JobSpec) { s.Checkpoint.EveryRounds = 0 }, "checkpoint.every_rounds",
			"must be at least 1, got 0; a checkpoint is written every this many outer rounds"},
		{"keep too many", func(s *meghav1.JobSpec) { s.Checkpoint.Keep = 1001 }, "checkpoint.keep",
			"must be at most 1000, got 1001; it is how many recent checkpoints to keep"},
		{"negative budget", func(s *meghav1.JobSpec) { s.Budget.MaxSpendMicros = -25_000_000 }, "budget.max_spend",
			"must not be negative, got -25.00; set the most the job may spend in US dollars, or 0 for no cap"},
		{"label key", func(s *meghav1.JobSpec) { s.Labels = map[string]string{"Team": "x"} }, "labels.Team",
			`key "Team" may contain only lowercase letters, digits and '_', '.', '-', '/'; try "team"`},
		{"empty label key", func(s *meghav1.JobSpec) { s.Labels = map[string]string{"": "x"} }, `labels[""]`, "empty label key; write a key such as team"},
		{"long label key", func(s *meghav1.JobSpec) { s.Labels = map[string]string{strings.Repeat("k", 64): "x"} }, "labels." + strings.Repeat("k", 64),
			"key is 64 characters long; at most 63 are allowed"},
		{"long label value", func(s *meghav1.JobSpec) { s.Labels = map[string]string{"k": strings.Repeat("v", 257)} }, "labels.k",
			"value is 257 characters long; at most 256 are allowed"},
		{"control character in label", func(s *meghav1.JobSpec) { s.Labels = map[string]string{"k": "a\nb"} }, "labels.k",
			"value contains control characters; write plain text"},
		{"too many labels", func(s *meghav1.JobSpec) { s.Labels = labels(65) }, "labels", "has 65 labels; at most 64 are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := validSpec()
			tt.mutate(spec)
			err := Validate(spec)
			var fes FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("Validate = %v, want FieldErrors", err)
			}
			if len(fes) != 1 || fes[0].Field != tt.field || !msgMatches(fes[0].Msg, tt.msg) {
				t.Errorf("Validate =\n%v\nwant exactly one error: %s: %s", err, tt.field, tt.msg)
			}
		})
	}
}

func make257() []string {
	out := make([]string, 257)
	for i := range out {
		out[i] = "x"
	}
	return out
}

func gpuModels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("GPU-%d", i)
	}
	return out
}

func labels(n int) map[string]string {
	out := map[string]string{}
	for i := 0; i < n; i++ {
		out[fmt.Sprintf("k%d", i)] = "v"
	}
	return out
}

func TestValidateNil(t *testing.T) {
	err := Validate(nil)
	if err == nil || err.Error() != "the job spec is missing" {
		t.Fatalf("Validate(nil) = %v", err)
	}
}

func TestValidateReportsEveryRuleInFieldOrder(t *testing.T) {
	err := Validate(&meghav1.JobSpec{})
	want := `name: required; set name to a short identifier: lowercase letters, digits and '-', starting with a letter, such as tiny-lm
kind: required; set kind to train or serve
model: required; set model.builtin to transformer-tiny, transformer-small or mlp-tiny, or model.command to your program's argv
resources.workers: must be between 1 and 1024, got 0; set resources.workers to the number of machines to lease
resources.gpus_per_worker: must be between 1 and 16, got 0; set resources.gpus_per_worker to the number of GPUs each machine needs
resources.bid_selector: empty bid selector; use one of cheapest, throughput-per-dollar, reliable, nearest or spread, or a weighted mix such as cheapest:0.5,reliable:0.5`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate(empty) =\n%v\nwant\n%s", err, want)
	}
}

func TestApplyDefaults(t *testing.T) {
	tests := []struct {
		name     string
		in, want *meghav1.JobSpec
	}{
		{"empty", &meghav1.JobSpec{}, &meghav1.JobSpec{
			Kind:       meghav1.JobKind_JOB_KIND_TRAIN,
			Resources:  &meghav1.Resources{Workers: 1, GpusPerWorker: 1, BidSelector: "throughput-per-dollar"},
			Sync:       &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO, InnerSteps: 50, Compression: meghav1.Compression_COMPRESSION_NONE, OuterLr: 0.7, OuterMomentum: 0.9},
			Checkpoint: &meghav1.CheckpointSpec{EveryRounds: 1, Keep: 3},
		}},
		{"builtin model gets data defaults", &meghav1.JobSpec{Model: &meghav1.ModelSpec{Builtin: "mlp-tiny"}, Data: &meghav1.DataSpec{SeqLen: 64}}, &meghav1.JobSpec{
			Kind:       meghav1.JobKind_JOB_KIND_TRAIN,
			Model:      &meghav1.ModelSpec{Builtin: "mlp-tiny"},
			Data:       &meghav1.DataSpec{SeqLen: 64, BatchSize: 16},
			Resources:  &meghav1.Resources{Workers: 1, GpusPerWorker: 1, BidSelector: "throughput-per-dollar"},
			Sync:       &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO, InnerSteps: 50, Compression: meghav1.Compression_COMPRESSION_NONE, OuterLr: 0.7, OuterMomentum: 0.9},
			Checkpoint: &meghav1.CheckpointSpec{EveryRounds: 1, Keep: 3},
		}},
		{"ddp gets no diloco defaults", &meghav1.JobSpec{Sync: &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP}}, &meghav1.JobSpec{
			Kind:       meghav1.JobKind_JOB_KIND_TRAIN,
			Resources:  &meghav1.Resources{Workers: 1, GpusPerWorker: 1, BidSelector: "throughput-per-dollar"},
			Sync:       &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP, Compression: meghav1.Compression_COMPRESSION_NONE},
			Checkpoint: &meghav1.CheckpointSpec{EveryRounds: 1, Keep: 3},
		}},
		{"serve job gets no training defaults", &meghav1.JobSpec{Kind: meghav1.JobKind_JOB_KIND_SERVE}, &meghav1.JobSpec{
			Kind:      meghav1.JobKind_JOB_KIND_SERVE,
			Resources: &meghav1.Resources{Workers: 1, GpusPerWorker: 1, BidSelector: "throughput-per-dollar"},
		}},
		{"set fields are kept", &meghav1.JobSpec{
			Kind:       meghav1.JobKind_JOB_KIND_TRAIN,
			Resources:  &meghav1.Resources{Workers: 5, GpusPerWorker: 2, BidSelector: "cheapest"},
			Sync:       &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO, InnerSteps: 10, Compression: meghav1.Compression_COMPRESSION_INT8, OuterLr: 1, OuterMomentum: 0.5},
			Checkpoint: &meghav1.CheckpointSpec{Store: "s3://b/p", EveryRounds: 4, Keep: 9},
		}, &meghav1.JobSpec{
			Kind:       meghav1.JobKind_JOB_KIND_TRAIN,
			Resources:  &meghav1.Resources{Workers: 5, GpusPerWorker: 2, BidSelector: "cheapest"},
			Sync:       &meghav1.SyncSpec{Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO, InnerSteps: 10, Compression: meghav1.Compression_COMPRESSION_INT8, OuterLr: 1, OuterMomentum: 0.5},
			Checkpoint: &meghav1.CheckpointSpec{Store: "s3://b/p", EveryRounds: 4, Keep: 9},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ApplyDefaults(tt.in)
			if !proto.Equal(tt.in, tt.want) {
				t.Fatalf("got  %v\nwant %v", tt.in, tt.want)
			}
			again := proto.Clone(tt.in).(*meghav1.JobSpec)
			ApplyDefaults(again)
			if !proto.Equal(again, tt.in) {
				t.Fatalf("ApplyDefaults is not idempotent: %v", again)
			}
		})
	}
	ApplyDefaults(nil)
}

func TestParseBidSelector(t *testing.T) {
	tests := []struct {
		in   string
		want []SelectorWeight
		err  string
	}{
		{in: "cheapest", want: []SelectorWeight{{"cheapest", 1}}},
		{in: "cheapest:0.5,reliable:0.5", want: []SelectorWeight{{"cheapest", 0.5}, {"reliable", 0.5}}},
		{in: " spread : 2 , nearest", want: []SelectorWeight{{"spread", 2}, {"nearest", 1}}},
		{in: "", err: "empty bid selector; ..."},
		{in: "cheapest,,spread", err: `"cheapest,,spread" has an empty term; write name:weight pairs separated by commas, such as cheapest:0.5,reliable:0.5`},
		{in: "fastest", err: `unknown bid selector "fastest"; use one of cheapest, throughput-per-dollar, reliable, nearest or spread, or a weighted mix such as cheapest:0.5,reliable:0.5`},
		{in: "throughput_per_dollar", err: `unknown bid selector "throughput_per_dollar"; did you mean "throughput-per-dollar"?`},
		{in: "cheapest:1,cheapest:2", err: `cheapest appears twice in "cheapest:1,cheapest:2"; list each selector once`},
		{in: "cheapest:half", err: `the weight of cheapest is "half", not a number; write name:weight, such as cheapest:0.5`},
		{in: "cheapest:-1", err: "the weight of cheapest must be a positive number, got -1"},
		{in: "cheapest:NaN", err: `the weight of cheapest is "NaN", not a number; write name:weight, such as cheapest:0.5`},
		{in: "cheapest:1e999", err: `the weight of cheapest is "1e999", not a number; write name:weight, such as cheapest:0.5`},
	}
	for _, tt := range tests {
		got, err := ParseBidSelector(tt.in)
		if tt.err != "" {
			if err == nil || !msgMatches(err.Error(), tt.err) {
				t.Errorf("ParseBidSelector(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseBidSelector(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
