package jobspec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Marshal writes spec as YAML in the schema Parse reads, fields in schema
// order, zero fields left out, map keys sorted. Parse(Marshal(spec)) equals
// spec. It fails only for values the schema cannot express (a nil spec,
// negative money, NaN or infinite numbers, unknown enum values, invalid
// UTF-8), naming each in a FieldErrors.
func Marshal(spec *meghav1.JobSpec) ([]byte, error) {
	if spec == nil {
		return nil, errors.New("jobspec: cannot marshal a nil job spec")
	}
	m := &marshaler{}
	root := m.jobSpec(spec)
	if len(m.errs) > 0 {
		return nil, m.errs
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("jobspec: encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("jobspec: encoding YAML: %w", err)
	}
	return buf.Bytes(), nil
}

type marshaler struct{ errs FieldErrors }

func (m *marshaler) fail(field, format string, args ...any) {
	m.errs = append(m.errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// mapping collects one section's fields in order.
type mapping struct{ node *yaml.Node }

func newMapping() mapping {
	return mapping{&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}}
}

func (s mapping) set(key string, v *yaml.Node) {
	if v != nil {
		s.node.Content = append(s.node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
	}
}

func (m *marshaler) jobSpec(spec *meghav1.JobSpec) *yaml.Node {
	top := newMapping()
	top.set("name", m.str("name", spec.Name))
	top.set("kind", m.enum("kind", int32(spec.Kind), kindNames))
	if md := spec.Model; md != nil {
		s := newMapping()
		s.set("builtin", m.str("model.builtin", md.Builtin))
		s.set("command", m.strList("model.command", md.Command))
		s.set("env", m.strMap("model.env", md.Env))
		top.set("model", s.node)
	}
	if d := spec.Data; d != nil {
		s := newMapping()
		s.set("dataset", m.str("data.dataset", d.Dataset))
		s.set("uri", m.str("data.uri", d.Uri))
		s.set("seed", uintNode(d.Seed))
		s.set("seq_len", uintNode(uint64(d.SeqLen)))
		s.set("batch_size", uintNode(uint64(d.BatchSize)))
		top.set("data", s.node)
	}
	if r := spec.Resources; r != nil {
		s := newMapping()
		s.set("workers", uintNode(uint64(r.Workers)))
		s.set("gpu_models", m.strList("resources.gpu_models", r.GpuModels))
		s.set("min_vram_gib", uintNode(uint64(r.MinVramGib)))
		s.set("gpus_per_worker", uintNode(uint64(r.GpusPerWorker)))
		s.set("max_price_per_gpu_hour", m.money("resources.max_price_per_gpu_hour", r.MaxPricePerGpuHourMicros))
		s.set("bid_selector", m.str("resources.bid_selector", r.BidSelector))
		top.set("resources", s.node)
	}
	if sy := spec.Sync; sy != nil {
		s := newMapping()
		s.set("algorithm", m.enum("sync.algorithm", int32(sy.Algorithm), algorithmNames))
		s.set("inner_steps", uintNode(uint64(sy.InnerSteps)))
		s.set("compression", m.enum("sync.compression", int32(sy.Compression), compressionNames))
		s.set("outer_lr", m.float("sync.outer_lr", sy.OuterLr))
		s.set("outer_momentum", m.float("sync.outer_momentum", sy.OuterMomentum))
		if sy.ErrorFeedback {
			s.set("error_feedback", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		top.set("sync", s.node)
	}
	if st := spec.Stop; st != nil {
		s := newMapping()
		s.set("rounds", uintNode(st.Rounds))
		s.set("tokens", uintNode(st.Tokens))
		s.set("target_loss", m.float("stop.target_loss", st.TargetLoss))
		top.set("stop", s.node)
	}
	if c := spec.Checkpoint; c != nil {
		s := newMapping()
		s.set("store", m.str("checkpoint.store", c.Store))
		s.set("mirrors", m.strList("checkpoint.mirrors", c.Mirrors))
		s.set("every_rounds", uintNode(uint64(c.EveryRounds)))
		s.set("keep", uintNode(uint64(c.Keep)))
		s.set("keep_every", uintNode(uint64(c.KeepEvery)))
		top.set("checkpoint", s.node)
	}
	if b := spec.Budget; b != nil {
		s := newMapping()
		s.set("max_spend", m.money("budget.max_spend", b.MaxSpendMicros))
		top.set("budget", s.node)
	}
	top.set("labels", m.strMap("labels", spec.Labels))
	return top.node
}

// str returns a node for s, or nil for "", which Marshal leaves out.
func (m *marshaler) str(field, s string) *yaml.Node {
	if s == "" {
		return nil
	}
	return m.strNode(field, s)
}

// strNode returns a node for s that reads back as exactly s: plain when s is
// simple printable ASCII, double-quoted (with escapes) otherwise.
func (m *marshaler) strNode(field, s string) *yaml.Node {
	if !utf8.ValidString(s) {
		m.fail(field, "is not valid UTF-8")
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if !simpleString(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// simpleString reports whether s is printable ASCII without leading or
// trailing spaces; the encoder still quotes it if YAML would read it as
// something other than a string.
func simpleString(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (m *marshaler) strList(field string, list []string) *yaml.Node {
	if len(list) == 0 {
		return nil
	}
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for i, s := range list {
		n.Content = append(n.Content, m.strNode(fmt.Sprintf("%s[%d]", field, i), s))
	}
	return n
}

func (m *marshaler) strMap(field string, kv map[string]string) *yaml.Node {
	if len(kv) == 0 {
		return nil
	}
	n := newMapping()
	for _, k := range sortedKeys(kv) {
		f := childPath(field, k)
		n.node.Content = append(n.node.Content, m.strNode(f, k), m.strNode(f, kv[k]))
	}
	return n.node
}

func uintNode(u uint64) *yaml.Node {
	if u == 0 {
		return nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(u, 10)}
}

func (m *marshaler) float(field string, f float64) *yaml.Node {
	switch {
	case math.Float64bits(f) == 0:
		return nil
	case !finite(f):
		m.fail(field, "%s cannot be written; job specs hold finite numbers only", fmtFloat(f))
		return nil
	}
	text := fmtFloat(f)
	if !strings.ContainsAny(text, ".e") {
		text += ".0"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: text}
}

func (m *marshaler) money(field string, micros int64) *yaml.Node {
	switch {
	case micros == 0:
		return nil
	case micros < 0:
		m.fail(field, "%s cannot be written; amounts of money are never negative", FormatUSD(micros))
		return nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: FormatUSD(micros)}
}

func (m *marshaler) enum(field string, v int32, names []string) *yaml.Node {
	switch {
	case v == 0:
		return nil
	case v < 0 || int(v) >= len(names):
		m.fail(field, "unknown value %d cannot be written; expected %s", v, oneOf(names[1:]))
		return nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: names[v]}
}
