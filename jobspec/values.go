package jobspec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Scalar readers. Each takes the value node of one field, reports what is
// wrong with it at the node's position, and returns the zero value for null
// (the field is unset) and for anything wrong.

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func isQuoted(n *yaml.Node) bool {
	return n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0
}

// describe names what n is, for "found ..." in messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	case isNull(n):
		return "null"
	case isQuoted(n):
		return "the quoted string " + quote(n.Value)
	}
	return quote(n.Value)
}

func (p *parser) str(n *yaml.Node, path string) string {
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected a string, found %s", describe(n))
		return ""
	}
	return n.Value
}

// strList reads a list of strings; example shows one in flow style.
func (p *parser) strList(n *yaml.Node, path, example string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		if n.Kind == yaml.ScalarNode {
			p.errorf(n, path, "expected a list of strings like %s, found the single value %s; write a list, even for one item", example, quote(n.Value))
		} else {
			p.errorf(n, path, "expected a list of strings like %s, found %s", example, describe(n))
		}
		return nil
	}
	var out []string
	for i, item := range n.Content {
		field := fmt.Sprintf("%s[%d]", path, i)
		if !p.plain(item, field) {
			continue
		}
		if item.Kind != yaml.ScalarNode || isNull(item) {
			p.errorf(item, field, "expected a string, found %s", describe(item))
			continue
		}
		p.pos[field] = position{item.Line, item.Column}
		out = append(out, item.Value)
	}
	return out
}

// strMap reads a mapping of strings to strings; example shows one in flow
// style.
func (p *parser) strMap(n *yaml.Node, path, example string) map[string]string {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "expected a mapping like %s, found %s", example, describe(n))
		return nil
	}
	out := map[string]string{}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, ok := p.key(k, path)
		if !ok {
			continue
		}
		field := childPath(path, key)
		if line, dup := lines[key]; dup {
			p.errorf(k, field, "duplicate key; it is already set on line %d, so remove one of them", line)
			continue
		}
		lines[key] = k.Line
		p.pos[field] = position{k.Line, k.Column}
		if !p.plain(v, field) {
			continue
		}
		out[key] = p.str(v, field)
	}
	return out
}

// uint reads a non-negative whole number that fits in bits bits; example is
// a typical value for the field.
func (p *parser) uint(n *yaml.Node, path string, bits int, example string) uint64 {
	if isNull(n) {
		return 0
	}
	v := n.Value
	digits := strings.ReplaceAll(v, "_", "")
	wellFormed := n.Kind == yaml.ScalarNode && isDigits(digits) &&
		!strings.HasPrefix(v, "_") && !strings.HasSuffix(v, "_") && !strings.Contains(v, "__")
	switch {
	case wellFormed && isQuoted(n):
		p.errorf(n, path, "expected a whole number like %s, found %s; remove the quotes", example, describe(n))
	case wellFormed:
		u, err := strconv.ParseUint(digits, 10, bits)
		if err != nil {
			p.errorf(n, path, "%s is too large; the largest allowed is %d", v, uint64(1)<<bits-1)
			return 0
		}
		return u
	case n.Kind == yaml.ScalarNode && !isQuoted(n) && strings.HasPrefix(v, "-") && isDigits(v[1:]):
		if strings.Trim(v[1:], "0") == "" {
			return 0
		}
		p.errorf(n, path, "must not be negative, found %s", v)
	default:
		p.errorf(n, path, "expected a whole number like %s, found %s", example, describe(n))
	}
	return 0
}

// float reads a finite number; example is a typical value for the field.
func (p *parser) float(n *yaml.Node, path, example string) float64 {
	if isNull(n) {
		return 0
	}
	v := n.Value
	switch {
	case n.Kind != yaml.ScalarNode:
		p.errorf(n, path, "expected a number like %s, found %s", example, describe(n))
	case isFloatSyntax(v) && isQuoted(n):
		p.errorf(n, path, "expected a number like %s, found %s; remove the quotes", example, describe(n))
	case isFloatSyntax(v):
		f, err := strconv.ParseFloat(v, 64)
		if err != nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			p.errorf(n, path, "%s is out of range; write a number like %s", v, example)
			return 0
		}
		return f
	case isNaNOrInf(v) && !isQuoted(n):
		p.errorf(n, path, "must be a finite number like %s, found %s", example, v)
	default:
		p.errorf(n, path, "expected a number like %s, found %s", example, describe(n))
	}
	return 0
}

func isNaNOrInf(s string) bool {
	switch strings.ToLower(strings.TrimLeft(s, "+-.")) {
	case "nan", "inf", "infinity":
		return true
	}
	return false
}

func (p *parser) bool(n *yaml.Node, path string) bool {
	if isNull(n) {
		return false
	}
	if n.Kind == yaml.ScalarNode {
		v := strings.ToLower(n.Value)
		if v == "true" || v == "false" {
			if !isQuoted(n) {
				return v == "true"
			}
			p.errorf(n, path, "expected true or false, found %s; remove the quotes", describe(n))
			return false
		}
	}
	p.errorf(n, path, "expected true or false, found %s", describe(n))
	return false
}

// money reads an amount of US dollars into micros; see ParseUSD.
func (p *parser) money(n *yaml.Node, path string) int64 {
	if isNull(n) {
		return 0
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected an amount in US dollars like 1.50, found %s", describe(n))
		return 0
	}
	m, err := ParseUSD(n.Value)
	switch {
	case err != nil:
		p.errorf(n, path, "%s", err.Error())
	case isQuoted(n):
		p.errorf(n, path, "expected an amount in US dollars like 1.50, found %s; remove the quotes", describe(n))
	default:
		return m
	}
	return 0
}

// enum reads one of names (indexed by enum number; names[0], the
// unspecified value, has no spelling) and returns its number.
func (p *parser) enum(n *yaml.Node, path string, names []string) int32 {
	if isNull(n) {
		return 0
	}
	choices := names[1:]
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected %s, found %s", oneOf(choices), describe(n))
		return 0
	}
	for i, name := range choices {
		if n.Value == name {
			return int32(i + 1)
		}
	}
	msg := fmt.Sprintf("expected %s, found %s", oneOf(choices), describe(n))
	if s := suggest(n.Value, choices); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	p.errorf(n, path, "%s", msg)
	return 0
}
