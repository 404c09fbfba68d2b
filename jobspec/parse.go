package jobspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// MaxSize is the largest job spec Parse reads, in bytes.
const MaxSize = 1 << 20

// position is where a field was written: its key's line and column.
type position struct{ line, col int }

// parser walks a yaml.Node tree, collecting problems and the position of
// every field it reads.
type parser struct {
	errs ParseError
	pos  map[string]position
}

// Parse reads a YAML job spec (see the package documentation for the
// schema) into a JobSpec. It checks the YAML's shape: known fields, one
// document, values of the right type. It does not apply defaults or
// validate; see ApplyDefaults, Validate and Load. On failure the error is a
// *ParseError listing every problem found, each with its line, column and
// field.
func Parse(data []byte) (*meghav1.JobSpec, error) {
	spec, _, err := parse(data)
	return spec, err
}

func parse(data []byte) (spec *meghav1.JobSpec, pos map[string]position, err error) {
	p := &parser{pos: map[string]position{}}
	defer func() {
		if r := recover(); r != nil {
			spec, pos = nil, nil
			err = &ParseError{Problems: []Problem{{Msg: fmt.Sprintf("cannot read the job spec: the YAML parser failed: %v", r)}}}
		}
	}()
	if len(data) > MaxSize {
		p.errs.add(Problem{Msg: fmt.Sprintf("the job spec is %d bytes; the limit is %d bytes (1 MiB)", len(data), MaxSize)})
		return nil, nil, &p.errs
	}
	if root := p.document(data); root != nil {
		spec = p.jobSpec(root)
	}
	if len(p.errs.Problems) > 0 {
		p.errs.sort()
		return nil, nil, &p.errs
	}
	return spec, p.pos, nil
}

// document returns the single document's root node, or nil after reporting
// why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs.add(Problem{Msg: emptyMsg})
		} else {
			p.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		p.errs.add(Problem{Line: next.Line, Column: next.Column,
			Msg: "found a second YAML document (after ---); a job spec holds exactly one job, so put each job in its own file"})
	} else if !errors.Is(err, io.EOF) {
		p.syntaxError(err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		p.errs.add(Problem{Msg: emptyMsg})
		return nil
	}
	return doc.Content[0]
}

const emptyMsg = "the job spec is empty; write at least name:, model: and stop: (see examples/train-tiny.yaml)"

var yamlErrLine = regexp.MustCompile(`^line (\d+): `)

// syntaxError reports an error from the YAML parser itself.
func (p *parser) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	p.errs.add(Problem{Line: line, Msg: "invalid YAML: " + msg})
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	if p.errs.full() {
		p.errs.Omitted++
		return
	}
	p.errs.add(Problem{Line: n.Line, Column: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// plain reports anchors, aliases and explicit tags on n, none of which a job
// spec needs; refusing aliases outright also rules out alias bombs.
func (p *parser) plain(n *yaml.Node, field string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		p.errorf(n, field, "aliases (*%s) are not supported; write the value out in full", n.Value)
	case n.Anchor != "":
		p.errorf(n, field, "anchors (&%s) are not supported; write the value out in full", n.Anchor)
	case n.Style&yaml.TaggedStyle != 0:
		p.errorf(n, field, "explicit YAML tags (%s) are not supported; remove the tag", n.Tag)
	default:
		return true
	}
	return false
}

// key returns the text of mapping key k.
func (p *parser) key(k *yaml.Node, parent string) (string, bool) {
	if !p.plain(k, parent) {
		return "", false
	}
	if k.Kind != yaml.ScalarNode || isNull(k) {
		p.errorf(k, parent, "keys must be names, found %s", describe(k))
		return "", false
	}
	return k.Value, true
}

// fields walks the mapping n of the section at path, whose known fields are
// keys, reporting duplicate and unknown keys, and calls set for each known
// field. It returns false when n is null (an unset section) or, after
// reporting so, not a mapping.
func (p *parser) fields(n *yaml.Node, path string, keys []string, set func(key string, v *yaml.Node, path string)) bool {
	if isNull(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		if path == "" {
			p.errorf(n, path, "a job spec must be a mapping of fields such as name: and kind:, found %s", describe(n))
		} else if len(keys) == 1 && n.Kind == yaml.ScalarNode {
			p.errorf(n, path, "expected a mapping of %s fields, found %s; write it as %s: {%s: %s}", path, describe(n), path, keys[0], n.Value)
		} else {
			p.errorf(n, path, "expected a mapping of %s fields (%s), found %s", path, strings.Join(keys, ", "), describe(n))
		}
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, ok := p.key(k, path)
		if !ok {
			continue
		}
		field := childPath(path, key)
		if line, dup := seen[key]; dup {
			p.errorf(k, field, "duplicate field; it is already set on line %d, so remove one of them", line)
			continue
		}
		seen[key] = k.Line
		if !slices.Contains(keys, key) {
			if p.errs.full() {
				p.errs.Omitted++
			} else {
				p.errorf(k, field, "unknown field; %s", unknownHint(key, path, keys))
			}
			continue
		}
		p.pos[field] = position{k.Line, k.Column}
		if p.plain(v, field) {
			set(key, v, field)
		}
	}
	return true
}

// unknownHint says what the user may have meant by key in section.
func unknownHint(key, section string, keys []string) string {
	if s := suggest(key, keys); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	for _, name := range topKeys {
		if name != section && slices.Contains(sections[name], key) {
			return fmt.Sprintf("%s belongs under %s:, as %s.%s", key, name, name, key)
		}
	}
	if section == "" {
		return "valid top-level fields are " + strings.Join(keys, ", ")
	}
	if slices.Contains(topKeys, key) {
		return fmt.Sprintf("%s is a top-level field; move it out of %s:", key, section)
	}
	return fmt.Sprintf("valid fields in %s are %s", section, strings.Join(keys, ", "))
}

func (p *parser) jobSpec(n *yaml.Node) *meghav1.JobSpec {
	spec := &meghav1.JobSpec{}
	p.fields(n, "", topKeys, func(key string, v *yaml.Node, path string) {
		switch key {
		case "name":
			spec.Name = p.str(v, path)
		case "kind":
			spec.Kind = meghav1.JobKind(p.enum(v, path, kindNames))
		case "model":
			spec.Model = p.model(v, path)
		case "data":
			spec.Data = p.data(v, path)
		case "resources":
			spec.Resources = p.resources(v, path)
		case "sync":
			spec.Sync = p.sync(v, path)
		case "stop":
			spec.Stop = p.stop(v, path)
		case "checkpoint":
			spec.Checkpoint = p.checkpoint(v, path)
		case "budget":
			spec.Budget = p.budget(v, path)
		case "labels":
			spec.Labels = p.strMap(v, path, "{team: nlp}")
		}
	})
	return spec
}

func (p *parser) model(n *yaml.Node, path string) *meghav1.ModelSpec {
	m := &meghav1.ModelSpec{}
	if !p.fields(n, path, modelKeys, func(key string, v *yaml.Node, path string) {
		switch key {
		case "builtin":
			m.Builtin = p.str(v, path)
		case "command":
			m.Command = p.strList(v, path, "[python3, train.py]")
		case "env":
			m.Env = p.strMap(v, path, "{KEY: value}")
		}
	}) {
		return nil
	}
	return m
}

func (p *parser) data(n *yaml.Node, path string) *meghav1.DataSpec {
	d := &meghav1.DataSpec{}
	if !p.fields(n, path, dataKeys, func(key string, v *yaml.Node, path string) {
		switch key {
		case "dataset":
			d.Dataset = p.str(v, path)
		case "uri":
			d.Uri = p.str(v, path)
		case "seed":
			d.Seed = p.uint(v, path, 64, "1")
		case "seq_len":
			d.SeqLen = uint32(p.uint(v, path, 32, "128"))
		case "batch_size":
			d.BatchSize = uint32(p.uint(v, path, 32, "16"))
		}
	}) {
		return nil
	}
	return d
}

func (p *parser) resources(n *yaml.Node, path string) *meghav1.Resources {
	r := &meghav1.Resources{}
	if !p.fields(n, path, resourcesKeys, func(key string, v *yaml.Node, path string) {
		switch key {
		case "workers":
			r.Workers = uint32(p.uint(v, path, 32, "4"))
		case "gpu_models":
			r.GpuModels = p.strList(v, path, "[H100-SXM, A100-80GB]")
		case "min_vram_gib":
			r.MinVramGib = uint32(p.uint(v, path, 32, "24"))
		case "gpus_per_worker":
			r.GpusPerWorker = uint32(p.uint(v, path, 32, "1"))
		case "max_price_per_gpu_hour":
			r.MaxPricePerGpuHourMicros = p.money(v, path)
		case "bid_selector":
			r.BidSelector = p.str(v, path)
		}
	}) {
		return nil
	}
	return r
}

func (p *parser) sync(n *yaml.Node, path string) *meghav1.SyncSpec {
	s := &meghav1.SyncSpec{}
	if !p.fields(n, path, syncKeys, func(key string, v *yaml.Node, path string) {
		errsBefore := len(p.errs.Problems) + p.errs.Omitted
		switch key {
		case "algorithm":
			s.Algorithm = meghav1.SyncAlgorithm(p.enum(v, path, algorithmNames))
		case "inner_steps":
			s.InnerSteps = uint32(p.uint(v, path, 32, "50"))
			if s.InnerSteps == 0 && !isNull(v) && len(p.errs.Problems)+p.errs.Omitted == errsBefore {
				p.errorf(v, path, "must be at least 1 (local steps between syncs; 1 syncs every step); 50 is the usual value, or leave it out")
			}
		case "compression":
			s.Compression = meghav1.Compression(p.enum(v, path, compressionNames))
		case "outer_lr":
			s.OuterLr = p.float(v, path, "0.7")
		case "outer_momentum":
			s.OuterMomentum = p.float(v, path, "0.9")
		case "error_feedback":
			s.ErrorFeedback = p.bool(v, path)
		}
	}) {
		return nil
	}
	return s
}

func (p *parser) stop(n *yaml.Node, path string) *meghav1.StopCondition {
	s := &meghav1.StopCondition{}
	if !p.fields(n, path, stopKeys, func(key string, v *yaml.Node, path string) {
		switch key {
		case "rounds":
			s.Rounds = p.uint(v, path, 64, "20")
		case "tokens":
			s.Tokens = p.uint(v, path, 64, "1000000")
		case "target_loss":
			s.TargetLoss = p.float(v, path, "2.5")
		}
	}) {
		return nil
	}
	return s
}

func (p *parser) checkpoint(n *yaml.Node, path string) *meghav1.CheckpointSpec {
	c := &meghav1.CheckpointSpec{}
	if !p.fields(n, path, checkpointKeys, func(key string, v *yaml.Node, path string) {
		switch key {
		case "store":
			c.Store = p.str(v, path)
		case "every_rounds":
			c.EveryRounds = uint32(p.uint(v, path, 32, "5"))
		case "keep":
			c.Keep = uint32(p.uint(v, path, 32, "3"))
		case "keep_every":
			c.KeepEvery = uint32(p.uint(v, path, 32, "10"))
		case "mirrors":
			c.Mirrors = p.strList(v, path, "[s3://bucket/prefix?endpoint=host:9000]")
		}
	}) {
		return nil
	}
	return c
}

func (p *parser) budget(n *yaml.Node, path string) *meghav1.Budget {
	b := &meghav1.Budget{}
	if !p.fields(n, path, budgetKeys, func(key string, v *yaml.Node, path string) {
		if key == "max_spend" {
			b.MaxSpendMicros = p.money(v, path)
		}
	}) {
		return nil
	}
	return b
}
