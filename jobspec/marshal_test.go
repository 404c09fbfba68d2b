package jobspec

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

func TestMarshalExample(t *testing.T) {
	spec, err := Parse(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := `name: tiny-lm
kind: train
model:
  builtin: transformer-tiny
data:
  dataset: goroot
  seed: 1
  seq_len: 128
  batch_size: 16
resources:
  workers: 3
  gpu_models: [H100-SXM, A100-80GB, L40S, RTX4090]
  min_vram_gib: 16
  gpus_per_worker: 1
  max_price_per_gpu_hour: 2.00
  bid_selector: throughput-per-dollar
sync:
  algorithm: diloco
  inner_steps: 50
  compression: int8
  outer_lr: 0.7
  outer_momentum: 0.9
  error_feedback: true
stop:
  rounds: 20
checkpoint:
  every_rounds: 5
  keep: 3
budget:
  max_spend: 25.00
labels:
  example: train-tiny
  team: nlp
`
	if string(got) != want {
		t.Fatalf("Marshal(example) =\n%s\nwant\n%s", got, want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		spec *meghav1.JobSpec
	}{
		{"empty", &meghav1.JobSpec{}},
		{"empty sections", &meghav1.JobSpec{
			Model: &meghav1.ModelSpec{}, Data: &meghav1.DataSpec{}, Resources: &meghav1.Resources{}, Sync: &meghav1.SyncSpec{},
			Stop: &meghav1.StopCondition{}, Checkpoint: &meghav1.CheckpointSpec{}, Budget: &meghav1.Budget{},
		}},
		{"defaulted", validSpec()},
		{"extremes", &meghav1.JobSpec{
			Kind:      meghav1.JobKind_JOB_KIND_SERVE,
			Data:      &meghav1.DataSpec{Seed: math.MaxUint64, SeqLen: math.MaxUint32, BatchSize: 1},
			Resources: &meghav1.Resources{Workers: math.MaxUint32, MaxPricePerGpuHourMicros: math.MaxInt64},
			Sync: &meghav1.SyncSpec{
				Algorithm: meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP, Compression: meghav1.Compression_COMPRESSION_FP16,
				OuterLr: 5e-324, OuterMomentum: math.MaxFloat64,
			},
			Stop:   &meghav1.StopCondition{Rounds: 1, Tokens: math.MaxUint64, TargetLoss: math.Copysign(0, -1)},
			Budget: &meghav1.Budget{MaxSpendMicros: 1},
		}},
		{"whole-number floats", &meghav1.JobSpec{Sync: &meghav1.SyncSpec{OuterLr: 1, OuterMomentum: -3}, Stop: &meghav1.StopCondition{TargetLoss: 1e21}}},
		{"awkward strings", &meghav1.JobSpec{
			Name: "123",
			Model: &meghav1.ModelSpec{
				Command: []string{"", " lead", "trail ", "a, b", "[x]", "{y}", "#c", "- d", "e: f", "true", "null", "~", "1.5", "0x1F",
					"multi\nline\n", "tab\there", "quote\"s", "it's", "back\\slash", "nul\x00", "\u2028", "é", "🙂", "*alias", "&anchor", "!tag", "%dir", "@at", "`tick`", "<<", "---", "..."},
				Env: map[string]string{"": "empty key", "A B": "", "yes": "no", "\n": "\t"},
			},
			Data:       &meghav1.DataSpec{Dataset: "  ", Uri: "s3://b/p?endpoint=x:9000&a=b#frag"},
			Resources:  &meghav1.Resources{GpuModels: []string{"H100-SXM", "H100-SXM", ""}, BidSelector: "cheapest:0.5,reliable:0.5"},
			Checkpoint: &meghav1.CheckpointSpec{Store: "file://./megha-data/checkpoints"},
			Labels:     map[string]string{"megha.io/team": "nlp: core", "x": "#"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Marshal(tt.spec)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(Marshal(spec)): %v\nYAML:\n%s", err, out)
			}
			if !proto.Equal(back, tt.spec) {
				t.Fatalf("round trip changed the spec:\n got %v\nwant %v\nYAML:\n%s", back, tt.spec, out)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	if _, err := Marshal(nil); err == nil {
		t.Errorf("Marshal(nil) succeeded")
	}
	spec := &meghav1.JobSpec{
		Name:      "bad\xff",
		Kind:      7,
		Resources: &meghav1.Resources{MaxPricePerGpuHourMicros: -1},
		Sync:      &meghav1.SyncSpec{Compression: -1, OuterLr: math.NaN()},
		Stop:      &meghav1.StopCondition{TargetLoss: math.Inf(1)},
	}
	_, err := Marshal(spec)
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("Marshal = %v, want FieldErrors", err)
	}
	want := `name: is not valid UTF-8
kind: unknown value 7 cannot be written; expected train or serve
resources.max_price_per_gpu_hour: -0.000001 cannot be written; amounts of money are never negative
sync.compression: unknown value -1 cannot be written; expected none, fp16 or int8
sync.outer_lr: NaN cannot be written; job specs hold finite numbers only
stop.target_loss: +Inf cannot be written; job specs hold finite numbers only`
	if err.Error() != want {
		t.Fatalf("Marshal error:\n%v\nwant:\n%s", err, want)
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts,
// Marshal writes back into YAML that Parse reads as the same spec.
func FuzzParse(f *testing.F) {
	f.Add(readExample(f))
	seeds := []string{
		"",
		"---\n",
		"name: a\n---\nname: b\n",
		"- 1\n- 2\n",
		"name: [\n",
		"resources:\n  workerz: 3\n  workers: four\n",
		"resources: {workers: 4294967296, max_price_per_gpu_hour: 1.1234567}\n",
		"budget: {max_spend: \"25.00\"}\n",
		"sync: {outer_lr: .nan, outer_momentum: -0.0, algorithm: ddp, compression: fp16}\n",
		"stop: {target_loss: 1e-400, tokens: 1_000}\n",
		"name: &a x\nlabels: *a\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nlabels: *b\n",
		"model: {command: [\"a\\u2028b\", '', \"\\0\"], env: {'': ~}}\n",
		"labels: {\"a\\nb\": \"c\\td\", x: |\n  multi\n  line\n}\n",
		"name: !!str 1\nkind: !custom train\n",
		"? [a]\n: b\n",
		"name: a\nname: b\nlabels: {x: 1, x: 2}\n",
		"\xff\xfe",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse(data)
		if err != nil {
			if spec != nil {
				t.Fatalf("Parse returned a spec and an error")
			}
			if strings.Contains(err.Error(), "the YAML parser failed") {
				t.Fatalf("Parse recovered from a panic: %v", err)
			}
			return
		}
		out, err := Marshal(spec)
		if err != nil {
			t.Fatalf("Marshal(Parse(data)) failed: %v\nspec: %v", err, spec)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(spec)) failed: %v\nYAML:\n%s", err, out)
		}
		if !proto.Equal(back, spec) {
			t.Fatalf("round trip changed the spec:\n got %v\nwant %v\nYAML:\n%s", back, spec, out)
		}
		_ = Validate(spec)
		ApplyDefaults(spec)
		_ = Validate(spec)
	})
}

func TestMarshalRoundTripsEveryCharacter(t *testing.T) {
	var runes []rune
	for r := rune(0); r < 0x300; r++ {
		runes = append(runes, r)
	}
	// Unicode spaces, line and paragraph separators, byte-order mark,
	// non-characters and the edges of the planes.
	runes = append(runes, 0x1680, 0x2000, 0x200a, 0x200b, 0x200e, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
		0xe000, 0xfeff, 0xfffd, 0xfffe, 0xffff, 0x10000, 0x1f642, 0x10ffff)
	for _, r := range runes {
		c := string(r)
		for _, s := range []string{c, "a" + c + "b", c + " ", " " + c, c + c, "- " + c, c + ": x"} {
			spec := &meghav1.JobSpec{
				Name:   s,
				Model:  &meghav1.ModelSpec{Command: []string{s}, Env: map[string]string{s: s}},
				Labels: map[string]string{s: s},
			}
			out, err := Marshal(spec)
			if err != nil {
				t.Fatalf("Marshal(%q): %v", s, err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("string %q: Parse(Marshal(spec)): %v\nYAML:\n%s", s, err, out)
			}
			if !proto.Equal(back, spec) {
				t.Fatalf("string %q: round trip changed the spec:\n got %v\nwant %v\nYAML:\n%s", s, back, spec, out)
			}
		}
	}
}
