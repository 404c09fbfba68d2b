package jobspec

import (
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

const examplePath = "../examples/train-tiny.yaml"

func readExample(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestExampleParsesAndValidates(t *testing.T) {
	data := readExample(t)
	spec, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &meghav1.JobSpec{
		Name:  "tiny-lm",
		Kind:  meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Builtin: "transformer-tiny"},
		Data:  &meghav1.DataSpec{Dataset: "goroot", Seed: 1, SeqLen: 128, BatchSize: 16},
		Resources: &meghav1.Resources{
			Workers:                  3,
			GpusPerWorker:            1,
			GpuModels:                []string{"H100-SXM", "A100-80GB", "L40S", "RTX4090"},
			MinVramGib:               16,
			MaxPricePerGpuHourMicros: 2_000_000,
			BidSelector:              "throughput-per-dollar",
		},
		Sync: &meghav1.SyncSpec{
			Algorithm:     meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO,
			InnerSteps:    50,
			Compression:   meghav1.Compression_COMPRESSION_INT8,
			ErrorFeedback: true,
			OuterLr:       0.7,
			OuterMomentum: 0.9,
		},
		Stop:       &meghav1.StopCondition{Rounds: 20},
		Checkpoint: &meghav1.CheckpointSpec{EveryRounds: 5, Keep: 3},
		Budget:     &meghav1.Budget{MaxSpendMicros: 25_000_000},
		Labels:     map[string]string{"team": "nlp", "example": "train-tiny"},
	}
	if !proto.Equal(spec, want) {
		t.Fatalf("Parse(example) =\n%v\nwant\n%v", spec, want)
	}
	defaulted := proto.Clone(spec).(*meghav1.JobSpec)
	ApplyDefaults(defaulted)
	if !proto.Equal(defaulted, spec) {
		t.Errorf("the example should spell out every default; ApplyDefaults changed it to\n%v", defaulted)
	}
	if err := Validate(defaulted); err != nil {
		t.Fatalf("Validate(example): %v", err)
	}
	if _, err := Load(data); err != nil {
		t.Fatalf("Load(example): %v", err)
	}
}

// problems parses src and returns its problems, failing if Parse succeeds
// or returns something other than a *ParseError.
func problems(t *testing.T, src string) []Problem {
	t.Helper()
	spec, err := Parse([]byte(src))
	if err == nil {
		t.Fatalf("Parse(%q) succeeded with %v; want an error", src, spec)
	}
	if spec != nil {
		t.Errorf("Parse returned a spec along with an error")
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Parse error is %T, want *ParseError", err)
	}
	return pe.Problems
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		line, col int
		field     string
		msg       string // the whole message, or a prefix of it ending in "..."
	}{
		{"unknown field suggests", "name: x\nresources:\n  workerz: 3\n", 3, 3, "resources.workerz",
			`unknown field; did you mean "workers"?`},
		{"unknown field lists keys", "stop:\n  forever: true\n", 2, 3, "stop.forever",
			"unknown field; valid fields in stop are rounds, tokens, target_loss"},
		{"unknown top-level field", "color: blue\n", 1, 1, "color",
			"unknown field; valid top-level fields are name, kind, model, data, resources, sync, stop, checkpoint, budget, labels"},
		{"field in the wrong section", "workers: 3\n", 1, 1, "workers",
			"unknown field; workers belongs under resources:, as resources.workers"},
		{"top-level field nested", "resources:\n  labels: {a: b}\n", 2, 3, "resources.labels",
			"unknown field; labels is a top-level field; move it out of resources:"},
		{"camelCase key", "data:\n  seqLen: 128\n", 2, 3, "data.seqLen", `unknown field; did you mean "seq_len"?`},
		{"API name of a money field", "budget:\n  max_spend_micros: 5\n", 2, 3, "budget.max_spend_micros",
			`unknown field; did you mean "max_spend"?`},
		{"word for a number", "resources:\n  workers: four\n", 2, 12, "resources.workers",
			`expected a whole number like 4, found "four"`},
		{"fraction for a whole number", "data:\n  seq_len: 12.5\n", 2, 12, "data.seq_len",
			`expected a whole number like 128, found "12.5"`},
		{"quoted number", "stop:\n  rounds: \"20\"\n", 2, 11, "stop.rounds",
			`expected a whole number like 20, found the quoted string "20"; remove the quotes`},
		{"negative whole number", "resources:\n  workers: -2\n", 2, 12, "resources.workers", "must not be negative, found -2"},
		{"uint32 overflow", "resources:\n  workers: 4294967296\n", 2, 12, "resources.workers",
			"4294967296 is too large; the largest allowed is 4294967295"},
		{"uint64 overflow", "stop:\n  tokens: 18446744073709551616\n", 2, 11, "stop.tokens",
			"18446744073709551616 is too large; the largest allowed is 18446744073709551615"},
		{"list for a number", "checkpoint:\n  keep: [3]\n", 2, 9, "checkpoint.keep", "expected a whole number like 3, found a list"},
		{"word for a float", "sync:\n  outer_lr: fast\n", 2, 13, "sync.outer_lr", `expected a number like 0.7, found "fast"`},
		{"zero inner steps", "sync:\n  inner_steps: 0\n", 2, 16, "sync.inner_steps", "must be at least 1 (local steps between syncs; 1 syncs every step); 50 is the usual value, or leave it out"},
		{"NaN", "sync:\n  outer_momentum: .nan\n", 2, 19, "sync.outer_momentum", "must be a finite number like 0.9, found .nan"},
		{"infinity", "stop:\n  target_loss: -.inf\n", 2, 16, "stop.target_loss", "must be a finite number like 2.5, found -.inf"},
		{"float out of range", "stop:\n  target_loss: 1e400\n", 2, 16, "stop.target_loss", "1e400 is out of range; write a number like 2.5"},
		{"yes for a bool", "sync:\n  error_feedback: yes\n", 2, 19, "sync.error_feedback", `expected true or false, found "yes"`},
		{"quoted bool", "sync:\n  error_feedback: 'true'\n", 2, 19, "sync.error_feedback",
			`expected true or false, found the quoted string "true"; remove the quotes`},
		{"unknown enum", "kind: training\n", 1, 7, "kind", `expected train or serve, found "training"; did you mean "train"?`},
		{"enum in capitals", "sync:\n  compression: INT8\n", 2, 16, "sync.compression", `expected none, fp16 or int8, found "INT8"; did you mean "int8"?`},
		{"mapping for a string", "name: {first: x}\n", 1, 7, "name", "expected a string, found a mapping"},
		{"string for a list", "model:\n  command: python3 train.py\n", 2, 12, "model.command",
			`expected a list of strings like [python3, train.py], found the single value "python3 train.py"; write a list, even for one item`},
		{"null list item", "resources:\n  gpu_models: [H100-SXM, ~]\n", 2, 26, "resources.gpu_models[1]", "expected a string, found null"},
		{"nested list item", "model:\n  command: [a, [b]]\n", 2, 16, "model.command[1]", "expected a string, found a list"},
		{"list for a map", "labels: [team]\n", 1, 9, "labels", "expected a mapping like {team: nlp}, found a list"},
		{"map value is a map", "model:\n  env: {A: {B: c}}\n", 2, 12, "model.env.A", "expected a string, found a mapping"},
		{"scalar for a section", "model: transformer-tiny\n", 1, 8, "model",
			`expected a mapping of model fields (builtin, command, env), found "transformer-tiny"`},
		{"scalar for budget", "budget: 25.00\n", 1, 9, "budget",
			`expected a mapping of budget fields, found "25.00"; write it as budget: {max_spend: 25.00}`},
		{"money with too many decimals", "resources:\n  max_price_per_gpu_hour: 1.1234567\n", 2, 27, "resources.max_price_per_gpu_hour",
			"1.1234567 has 7 decimal places; write at most 6 (amounts are kept in millionths of a dollar)"},
		{"negative money", "budget:\n  max_spend: -5\n", 2, 14, "budget.max_spend", "must not be negative, found -5"},
		{"money with a dollar sign", "budget:\n  max_spend: $25\n", 2, 14, "budget.max_spend", "write the amount without a currency sign, like 25"},
		{"quoted money", "budget:\n  max_spend: \"25.00\"\n", 2, 14, "budget.max_spend",
			`expected an amount in US dollars like 1.50, found the quoted string "25.00"; remove the quotes`},
		{"duplicate field", "name: a\nkind: train\nname: b\n", 3, 1, "name", "duplicate field; it is already set on line 1, so remove one of them"},
		{"duplicate map key", "labels:\n  team: a\n  team: b\n", 3, 3, "labels.team", "duplicate key; it is already set on line 2, so remove one of them"},
		{"alias", "name: &n tiny\nmodel:\n  builtin: *n\n", 1, 7, "name", "anchors (&n) are not supported; write the value out in full"},
		{"alias alone", "labels:\n  a: *x\n", 0, 0, "", "invalid YAML: unknown anchor 'x' referenced"},
		{"explicit tag", "resources:\n  workers: !!int 3\n", 2, 12, "resources.workers", "explicit YAML tags (!!int) are not supported; remove the tag"},
		{"custom tag", "name: !secret x\n", 1, 7, "name", "explicit YAML tags (!secret) are not supported; remove the tag"},
		{"complex key", "? [a, b]\n: c\n", 1, 3, "", "keys must be names, found a list"},
		{"multiple documents", "name: a\n---\nname: b\n", 2, 1, "",
			"found a second YAML document (after ---); a job spec holds exactly one job, so put each job in its own file"},
		{"empty input", "", 0, 0, "", emptyMsg},
		{"only comments", "# nothing yet\n", 0, 0, "", emptyMsg},
		{"only a document marker", "---\n", 0, 0, "", emptyMsg},
		{"null document", "~\n", 0, 0, "", emptyMsg},
		{"list at top level", "- name: a\n", 1, 1, "", "a job spec must be a mapping of fields such as name: and kind:, found a list"},
		{"scalar at top level", "tiny-lm\n", 1, 1, "", `a job spec must be a mapping of fields such as name: and kind:, found "tiny-lm"`},
		{"syntax error", "name: a\n  kind: train\n", 2, 0, "", "invalid YAML: mapping values are not allowed in this context"},
		{"tab indentation", "resources:\n\tworkers: 3\n", 2, 0, "", "invalid YAML: found character that cannot start any token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := problems(t, tt.src)
			p := ps[0]
			if p.Line != tt.line || p.Column != tt.col || p.Field != tt.field || !msgMatches(p.Msg, tt.msg) {
				t.Errorf("first problem = %+v\nwant line %d, column %d, field %q, msg %q\nall: %v",
					p, tt.line, tt.col, tt.field, tt.msg, ps)
			}
		})
	}
}

func msgMatches(got, want string) bool {
	if prefix, ok := strings.CutSuffix(want, "..."); ok {
		return strings.HasPrefix(got, prefix)
	}
	return got == want
}

func TestParseCollectsEveryProblem(t *testing.T) {
	src := `name: x
resources:
  workerz: 3
  workers: four
sync:
  algorithm: fast
stop:
  rounds: -1
`
	_, err := Parse([]byte(src))
	want := `line 3, column 3: resources.workerz: unknown field; did you mean "workers"?
line 4, column 12: resources.workers: expected a whole number like 4, found "four"
line 6, column 14: sync.algorithm: expected diloco or ddp, found "fast"
line 8, column 11: stop.rounds: must not be negative, found -1`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error:\n%v\nwant:\n%s", err, want)
	}
}

func TestParseCapsProblems(t *testing.T) {
	var b strings.Builder
	for i := 0; i < MaxProblems+7; i++ {
		b.WriteString("bogus")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(": 1\n")
	}
	_, err := Parse([]byte(b.String()))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a *ParseError", err)
	}
	if len(pe.Problems) != MaxProblems || pe.Omitted != 7 {
		t.Fatalf("got %d problems and %d omitted, want %d and 7", len(pe.Problems), pe.Omitted, MaxProblems)
	}
	if !strings.HasSuffix(err.Error(), "\n(and 7 more problems)") {
		t.Errorf("error does not end with the count of omitted problems:\n%v", err)
	}
}

func TestParseRejectsLargeInput(t *testing.T) {
	data := []byte("name: x\n" + strings.Repeat("#", MaxSize))
	ps := problems(t, string(data))
	if len(ps) != 1 || ps[0].Msg != "the job spec is 1048584 bytes; the limit is 1048576 bytes (1 MiB)" {
		t.Fatalf("got %v", ps)
	}
}

func TestParseRejectsAliasBomb(t *testing.T) {
	src := `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
labels: *h
`
	ps := problems(t, src)
	last := ps[len(ps)-1]
	if last.Field != "labels" || last.Msg != "aliases (*h) are not supported; write the value out in full" {
		t.Fatalf("last problem = %+v", last)
	}
}

func TestParseNullMeansUnset(t *testing.T) {
	spec, err := Parse([]byte("name:\nmodel:\nresources:\n  workers: ~\n  gpu_models:\nlabels: {a: null}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &meghav1.JobSpec{Resources: &meghav1.Resources{}, Labels: map[string]string{"a": ""}}
	if !proto.Equal(spec, want) {
		t.Fatalf("got %v, want %v", spec, want)
	}
}

func TestParseScalars(t *testing.T) {
	spec, err := Parse([]byte(`name: 123
model: {command: [python3, "--lr", 0.1, true, "", '~']}
stop: {tokens: 1_000_000, target_loss: 1e-3}
sync: {outer_lr: 1, error_feedback: True}
resources: {max_price_per_gpu_hour: .5}
budget: {max_spend: 0.1}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &meghav1.JobSpec{
		Name:      "123",
		Model:     &meghav1.ModelSpec{Command: []string{"python3", "--lr", "0.1", "true", "", "~"}},
		Stop:      &meghav1.StopCondition{Tokens: 1_000_000, TargetLoss: 0.001},
		Sync:      &meghav1.SyncSpec{OuterLr: 1, ErrorFeedback: true},
		Resources: &meghav1.Resources{MaxPricePerGpuHourMicros: 500_000},
		Budget:    &meghav1.Budget{MaxSpendMicros: 100_000},
	}
	if !proto.Equal(spec, want) {
		t.Fatalf("got %v\nwant %v", spec, want)
	}
}

func TestLoadLocatesValidationErrors(t *testing.T) {
	src := `name: Tiny
model:
  builtin: transformer-tiny
data:
  dataset: goroot
resources:
  workers: 2000
  gpu_models: [H100-SXM, H100-SXM]
stop:
  rounds: 3
`
	_, err := Load([]byte(src))
	want := `line 1, column 1: name: "Tiny" is not a valid name; use lowercase letters, digits and '-', starting with a letter, such as tiny-lm (try "tiny")
line 7, column 3: resources.workers: must be between 1 and 1024, got 2000; set resources.workers to the number of machines to lease
line 8, column 26: resources.gpu_models[1]: "H100-SXM" is already listed at resources.gpu_models[0]; remove one`
	if err == nil || err.Error() != want {
		t.Fatalf("Load error:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoadDefaultedFieldHasNoPosition(t *testing.T) {
	_, err := Load([]byte("name: a\nmodel: {builtin: mlp-tiny}\ndata: {dataset: synthetic}\n"))
	want := "stop: a train job of a built-in model needs at least one stop condition; set stop.rounds, stop.tokens or stop.target_loss"
	if err == nil || err.Error() != want {
		t.Fatalf("Load error:\n%v\nwant:\n%s", err, want)
	}
}
