package jobspec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxProblems is the most problems a ParseError lists; the rest are only
// counted, in ParseError.Omitted.
const MaxProblems = 20

// Problem is one thing wrong with a YAML job spec, at the place in the source
// where it was written.
type Problem struct {
	Line   int    // 1-based; 0 when the problem has no place in the source
	Column int    // 1-based; 0 when unknown
	Field  string // dotted YAML path such as "resources.workers"; empty for the whole document
	Msg    string // what is wrong and what to write instead
}

// Error formats p as "line 7, column 3: resources.workerz: unknown field".
func (p Problem) Error() string {
	var b strings.Builder
	switch {
	case p.Line > 0 && p.Column > 0:
		fmt.Fprintf(&b, "line %d, column %d: ", p.Line, p.Column)
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ParseError is the error Parse and Load return: the problems found in a job
// spec, in source order, at most MaxProblems of them.
type ParseError struct {
	Problems []Problem
	Omitted  int // problems found beyond MaxProblems and not listed
}

// Error prints one problem per line.
func (e *ParseError) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	for _, p := range e.Problems {
		lines = append(lines, p.Error())
	}
	if e.Omitted > 0 {
		lines = append(lines, fmt.Sprintf("(and %d more problems)", e.Omitted))
	}
	return strings.Join(lines, "\n")
}

// sort puts the problems in source order; those without a line go last.
func (e *ParseError) sort() {
	sort.SliceStable(e.Problems, func(i, j int) bool {
		a, b := e.Problems[i], e.Problems[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

func (e *ParseError) full() bool { return len(e.Problems) >= MaxProblems }

func (e *ParseError) add(p Problem) {
	if e.full() {
		e.Omitted++
		return
	}
	e.Problems = append(e.Problems, p)
}

// FieldError is one rule a job spec breaks, named by the field's dotted YAML
// path, e.g. "resources.max_price_per_gpu_hour" or "model.command[2]".
type FieldError struct {
	Field string // empty when the problem is the spec as a whole
	Msg   string // what is wrong and what to write instead
}

// Error formats e as "field: message".
func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// FieldErrors is the error Validate returns: every rule the spec breaks, in
// field order. The coordinator turns each one into a gRPC field violation.
type FieldErrors []FieldError

// Error prints one field error per line.
func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// quote renders a user's value for a message: Go-quoted, shortened if long.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// oneOf lists choices for a message: "a, b or c".
func oneOf(choices []string) string {
	switch len(choices) {
	case 0:
		return ""
	case 1:
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// suggest names the choice closest to got, or "" when none is close.
// Spelling differences in case, '-' and '_' count for nothing, and so does
// a "_micros" suffix (the API's name for a money field); a prefix of a
// choice, or a choice with something added, is close.
func suggest(got string, choices []string) string {
	norm := func(s string) string {
		s = strings.ToLower(s)
		s = strings.TrimSuffix(s, "_micros")
		return separators.Replace(s)
	}
	g := norm(got)
	for _, c := range choices {
		if norm(c) == g {
			return c
		}
	}
	if len(g) >= 3 {
		for _, c := range choices {
			if n := norm(c); strings.HasPrefix(n, g) || len(n) >= 3 && strings.HasPrefix(g, n) {
				return c
			}
		}
	}
	best, bestDist := "", -1
	for _, c := range choices {
		d := editDistance(g, norm(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 1
	if len(g) >= 5 {
		limit = 2
	}
	if len(g) >= 10 {
		limit = 3
	}
	if bestDist >= 0 && bestDist <= limit {
		return best
	}
	return ""
}

var separators = strings.NewReplacer("_", "", "-", "")

// editDistance is the Levenshtein distance between a and b, in bytes.
// Inputs longer than 64 bytes are never close to a field name, so they are
// cut short to bound the work.
func editDistance(a, b string) int {
	if len(a) > 64 {
		a = a[:64]
	}
	if len(b) > 64 {
		b = b[:64]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
