package jobspec

import (
	"fmt"
	"github.com/megha-ml/megha/worker/gpu"
	"math"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"google.golang.org/protobuf/proto"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// BuiltinModels are the models the built-in trainer provides, for
// model.builtin. Callers must not modify it.
var BuiltinModels = []string{"transformer-tiny", "transformer-small", "mlp-tiny"}

// BuiltinDatasets are the datasets the built-in trainer provides, for
// data.dataset. Callers must not modify it.
var BuiltinDatasets = []string{"synthetic", "goroot"}

// Limits enforced by Validate.
const (
	maxNameLen       = 63
	maxArgs          = 256
	maxArgLen        = 4096
	maxEnv           = 256
	maxEnvValueLen   = 32 << 10
	maxURILen        = 2048
	maxSeqLen        = 1 << 16
	maxBatchSize     = 1 << 16
	maxWorkers       = 1024
	maxGPUsPerWorker = 16
	maxVRAMGiB       = 1024
	maxGPUModels     = 32
	maxGPUModelLen   = 64
	maxPriceMicros   = 1000 * MicrosPerUSD
	maxInnerSteps    = 100_000
	maxOuterLR       = 10
	maxKeep          = 1000
	maxLabels        = 64
	maxLabelKeyLen   = 63
	maxLabelValueLen = 256
)

var (
	nameRe     = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	envNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKeyRe = regexp.MustCompile(`^[a-z0-9_./-]+$`)
)

// Validate checks spec against every rule a job spec must follow and returns
// nil or FieldErrors naming each broken rule, in field order, with what to
// write instead. It expects a spec that ApplyDefaults has been applied to: a
// field left at zero that has a default is reported as missing. The CLI
// runs it before submitting and the coordinator on every submitted spec.
func Validate(spec *meghav1.JobSpec) error {
	if spec == nil {
		return FieldErrors{{Msg: "the job spec is missing"}}
	}
	v := &validator{
		train: spec.Kind == meghav1.JobKind_JOB_KIND_TRAIN,
		serve: spec.Kind == meghav1.JobKind_JOB_KIND_SERVE,
	}
	v.name(spec.Name)
	v.kind(spec.Kind)
	v.model(spec.Model)
	v.data(spec.Data, spec.GetModel().GetBuiltin() != "")
	v.resources(spec.Resources)
	v.sync(spec.Sync)
	v.stop(spec.Stop, spec.GetModel().GetBuiltin() != "")
	v.checkpoint(spec.Checkpoint)
	if m := spec.GetBudget().GetMaxSpendMicros(); m < 0 {
		v.add("budget.max_spend", "must not be negative, got %s; set the most the job may spend in US dollars, or 0 for no cap", FormatUSD(m))
	}
	v.labels(spec.Labels)
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// validator collects the rules a spec breaks. Rules that depend on the
// kind of job are skipped while the kind itself is invalid.
type validator struct {
	train bool
	serve bool
	errs  FieldErrors
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) name(name string) {
	const hint = "lowercase letters, digits and '-', starting with a letter, such as tiny-lm"
	switch {
	case name == "":
		v.add("name", "required; set name to a short identifier: %s", hint)
	case len(name) > maxNameLen:
		v.add("name", "is %d characters long; use at most %d", len(name), maxNameLen)
	case !nameRe.MatchString(name):
		msg := fmt.Sprintf("%s is not a valid name; use %s", quote(name), hint)
		if s := suggestName(name); s != "" {
			msg += fmt.Sprintf(" (try %q)", s)
		}
		v.add("name", "%s", msg)
	case strings.HasSuffix(name, "-"):
		v.add("name", "%s must not end with '-'; try %q", quote(name), strings.TrimRight(name, "-"))
	}
}

// suggestName turns an invalid name into a valid one when it can.
func suggestName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	s := strings.TrimLeft(strings.TrimRight(b.String(), "-"), "0123456789-")
	if s == "" || len(s) > maxNameLen || !nameRe.MatchString(s) {
		return ""
	}
	return s
}

func (v *validator) kind(k meghav1.JobKind) {
	switch k {
	case meghav1.JobKind_JOB_KIND_TRAIN, meghav1.JobKind_JOB_KIND_SERVE:
	case meghav1.JobKind_JOB_KIND_UNSPECIFIED:
		v.add("kind", "required; set kind to train or serve")
	default:
		v.add("kind", "must be train or serve, got unknown kind %d", int32(k))
	}
}

func (v *validator) model(m *meghav1.ModelSpec) {
	builtins := oneOf(BuiltinModels)
	switch {
	case m.GetBuiltin() == "" && len(m.GetCommand()) == 0:
		v.add("model", "required; set model.builtin to %s, or model.command to your program's argv", builtins)
	case m.GetBuiltin() != "" && len(m.GetCommand()) > 0:
		v.add("model", "set either model.builtin or model.command, not both")
	case m.GetBuiltin() != "" && !slices.Contains(BuiltinModels, m.GetBuiltin()):
		msg := fmt.Sprintf("unknown model %s; use %s, or model.command to run your own program", quote(m.GetBuiltin()), builtins)
		if s := suggest(m.GetBuiltin(), BuiltinModels); s != "" {
			msg = fmt.Sprintf("unknown model %s; did you mean %q?", quote(m.GetBuiltin()), s)
		}
		v.add("model.builtin", "%s", msg)
	}

	cmd := m.GetCommand()
	if len(cmd) > maxArgs {
		v.add("model.command", "has %d arguments; at most %d are allowed (pass the rest in a file)", len(cmd), maxArgs)
	}
	for i, arg := range cmd {
		field := fmt.Sprintf("model.command[%d]", i)
		switch {
		case arg == "":
			v.add(field, "empty argument; remove it")
		case len(arg) > maxArgLen:
			v.add(field, "is %d bytes long; at most %d are allowed", len(arg), maxArgLen)
		case strings.ContainsRune(arg, 0):
			v.add(field, "contains a NUL byte, which no command line can carry")
		}
	}

	env := m.GetEnv()
	if len(env) > 0 && len(cmd) == 0 && m.GetBuiltin() != "" {
		v.add("model.env", "applies only to model.command; the builtin models take no environment, so remove it")
	}
	if len(env) > maxEnv {
		v.add("model.env", "has %d variables; at most %d are allowed", len(env), maxEnv)
	}
	for _, k := range sortedKeys(env) {
		field := childPath("model.env", k)
		switch {
		case !envNameRe.MatchString(k):
			v.add(field, "%s is not a valid environment variable name; use letters, digits and '_', not starting with a digit, such as BATCH_SIZE", quote(k))
		case len(env[k]) > maxEnvValueLen:
			v.add(field, "value is %d bytes long; at most %d are allowed", len(env[k]), maxEnvValueLen)
		case strings.ContainsRune(env[k], 0):
			v.add(field, "value contains a NUL byte, which no environment can carry")
		}
	}
}

func (v *validator) data(d *meghav1.DataSpec, builtin bool) {
	dataset, uri := d.GetDataset(), d.GetUri()
	datasets := oneOf(BuiltinDatasets)
	switch {
	case dataset != "" && uri != "":
		v.add("data", "set either data.dataset or data.uri, not both")
	case dataset != "" && !slices.Contains(BuiltinDatasets, dataset):
		msg := fmt.Sprintf("unknown dataset %s; use %s, or set data.uri to your own data instead", quote(dataset), datasets)
		if s := suggest(dataset, BuiltinDatasets); s != "" {
			msg = fmt.Sprintf("unknown dataset %s; did you mean %q?", quote(dataset), s)
		}
		v.add("data.dataset", "%s", msg)
	case dataset == "" && uri == "" && builtin && v.train:
		v.add("data", "a builtin model needs data; set data.dataset to %s, or data.uri to your own data", datasets)
	}
	if uri != "" {
		if msg := checkURI(uri, []string{"file", "s3", "http", "https"}); msg != "" {
			v.add("data.uri", "%s", msg)
		}
	}
	v.between("data.seq_len", uint64(d.GetSeqLen()), b2u(builtin), maxSeqLen, "tokens per training sequence; 128 suits the tiny models")
	v.between("data.batch_size", uint64(d.GetBatchSize()), b2u(builtin), maxBatchSize, "sequences per worker per inner step")
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// between reports n outside [lo, hi]; what says what the field means.
func (v *validator) between(field string, n, lo, hi uint64, what string) {
	if n < lo || n > hi {
		v.add(field, "must be between %d and %d, got %d; set %s to the %s", lo, hi, n, field, what)
	}
}

func (v *validator) resources(r *meghav1.Resources) {
	v.between("resources.workers", uint64(r.GetWorkers()), 1, maxWorkers, "number of machines to lease")
	v.between("resources.gpus_per_worker", uint64(r.GetGpusPerWorker()), 1, maxGPUsPerWorker, "number of GPUs each machine needs")
	if n := r.GetMinVramGib(); n > maxVRAMGiB {
		v.add("resources.min_vram_gib", "must be at most %d, got %d; it is the least memory each GPU needs, in GiB", maxVRAMGiB, n)
	}

	models := r.GetGpuModels()
	if len(models) > maxGPUModels {
		v.add("resources.gpu_models", "lists %d models; at most %d are allowed (leave it empty to accept any model)", len(models), maxGPUModels)
		models = nil // one error for the list, not one per name
	}
	first := map[string]int{}
	for i, m := range models {
		field := fmt.Sprintf("resources.gpu_models[%d]", i)
		j, dup := first[m]
		switch {
		case m == "":
			v.add(field, "empty model name; remove it, or write a name such as H100-SXM")
		case len(m) > maxGPUModelLen:
			v.add(field, "is %d characters long; GPU model names have at most %d", len(m), maxGPUModelLen)
		case strings.IndexFunc(m, isSpaceOrControl) >= 0:
			v.add(field, "%s contains spaces or control characters; write the catalog name, such as H100-SXM", quote(m))
		case dup:
			v.add(field, "%s is already listed at resources.gpu_models[%d]; remove one", quote(m), j)
		default:
			first[m] = i
			if _, ok := gpu.Lookup(m); ok {
				break
			}
			if known, ok := gpu.Normalize(m); ok {
				v.add(field, "no GPU model is called %s; did you mean %s? (models are named by catalog ID)", quote(m), quote(known.ID))
			} else {
				v.add(field, "no GPU model is called %s; known models: %s", quote(m), strings.Join(gpu.ModelIDs(), ", "))
			}
		}
	}

	switch p := r.GetMaxPricePerGpuHourMicros(); {
	case p < 0:
		v.add("resources.max_price_per_gpu_hour", "must not be negative, got %s; set the most you will pay per GPU-hour in US dollars, or 0 for no cap", FormatUSD(p))
	case p > maxPriceMicros:
		v.add("resources.max_price_per_gpu_hour", "must be at most %s US dollars per GPU-hour, got %s; check for a misplaced decimal point", FormatUSD(maxPriceMicros), FormatUSD(p))
	}

	if _, err := ParseBidSelector(r.GetBidSelector()); err != nil {
		v.add("resources.bid_selector", "%s", err.Error())
	}
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f || r == 0x85 || r == 0xa0 || r >= 0x2000 && r <= 0x200b || r == 0x2028 || r == 0x2029 || r == 0x3000 || r == 0xfeff
}

// checkURI says what is wrong with uri, or "" if nothing is.
func checkURI(uri string, schemes []string) string {
	msg := checkURIShape(uri, schemes)
	if msg == "" {
		return ""
	}
	return msg + "; write it like " + uriExamples(schemes)
}

func uriExamples(schemes []string) string {
	examples := map[string]string{
		"file":  "file:///path/to/dir",
		"s3":    "s3://bucket/prefix",
		"http":  "http://host/path",
		"https": "https://host/path",
	}
	var out []string
	for _, s := range schemes {
		if s != "http" || !slices.Contains(schemes, "https") {
			out = append(out, examples[s])
		}
	}
	return oneOf(out)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func isEmpty(m proto.Message) bool { return proto.Size(m) == 0 }

func checkURIShape(uri string, schemes []string) string {
	if len(uri) > maxURILen {
		return fmt.Sprintf("is %d characters long; at most %d are allowed", len(uri), maxURILen)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Sprintf("%s is not a valid URI", quote(uri))
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "":
		return fmt.Sprintf("%s has no scheme", quote(uri))
	case !slices.Contains(schemes, scheme):
		return fmt.Sprintf("scheme %s is not supported here; use %s", quote(u.Scheme), oneOf(schemes))
	case scheme == "s3" && u.Host == "":
		return fmt.Sprintf("%s names no bucket", quote(uri))
	case (scheme == "http" || scheme == "https") && u.Host == "":
		return fmt.Sprintf("%s names no host", quote(uri))
	case scheme == "file" && u.Host == "" && u.Path == "" && u.Opaque == "":
		return fmt.Sprintf("%s names no path", quote(uri))
	}
	return ""
}

func (v *validator) labels(labels map[string]string) {
	if len(labels) > maxLabels {
		v.add("labels", "has %d labels; at most %d are allowed", len(labels), maxLabels)
	}
	for _, k := range sortedKeys(labels) {
		field := childPath("labels", k)
		val := labels[k]
		switch {
		case k == "":
			v.add(field, "empty label key; write a key such as team")
		case len(k) > maxLabelKeyLen:
			v.add(field, "key is %d characters long; at most %d are allowed", len(k), maxLabelKeyLen)
		case !labelKeyRe.MatchString(k):
			msg := fmt.Sprintf("key %s may contain only lowercase letters, digits and '_', '.', '-', '/'", quote(k))
			if low := strings.ToLower(k); labelKeyRe.MatchString(low) {
				msg += fmt.Sprintf("; try %q", low)
			}
			v.add(field, "%s", msg)
		case len(val) > maxLabelValueLen:
			v.add(field, "value is %d characters long; at most %d are allowed", len(val), maxLabelValueLen)
		case strings.IndexFunc(val, unicode.IsControl) >= 0:
			v.add(field, "value contains control characters; write plain text")
		}
	}
}
