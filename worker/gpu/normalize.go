package gpu

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// spellings are the names users type for each model besides its ID and
// display name. ParseEmulate accepts only these exact spellings (in any case
// and punctuation); Normalize falls back to the looser patterns of
// matchPattern.
var spellings = map[string][]string{
	"H200":      {"H200 SXM", "H200 NVL"},
	"H100-SXM":  {"H100", "H100 SXM5", "H100 80GB"},
	"H100-PCIe": {"H100 PCI Express"},
	"A100-80GB": {"A100", "A100 SXM 80GB", "A100-SXM4-80GB", "A100 PCIe 80GB", "A100 80GB PCIe"},
	"A100-40GB": {"A100 SXM 40GB", "A100-SXM4-40GB", "A100-PCIE-40GB", "A100 40GB PCIe"},
	"A6000":     {"RTX A6000"},
	"RTX4090":   {"4090", "RTX 4090"},
	"RTX3090":   {"3090", "RTX 3090"},
	"V100":      {"V100 32GB", "V100-SXM2", "V100-SXM2-32GB", "V100 PCIe"},
	"A10":       {"A10G"},
}

// aliases maps keys (see key) to catalog IDs.
var aliases = func() map[string]string {
	m := make(map[string]string)
	for _, mod := range catalog {
		m[key(mod.ID)] = mod.ID
		m[key(mod.Name)] = mod.ID
		for _, s := range spellings[mod.ID] {
			m[key(s)] = mod.ID
		}
	}
	return m
}()

// noise are words that carry no model information in NVML and marketplace
// names ("Mock NVIDIA GeForce RTX 4090", "Tesla T4").
var noise = map[string]bool{
	"nvidia": true, "mock": true, "geforce": true, "tesla": true,
	"quadro": true, "gpu": true, "graphics": true, "tensor": true, "core": true,
}

var (
	// memHint finds a stated capacity such as "-40GB" or " 80 GiB"; the
	// boundary before the digits keeps "A10080GB" from reading as 10080 GB.
	memHint = regexp.MustCompile(`(?:^|[^a-z0-9])(\d+)\s*gi?b\b`)
	// a100 matches a word that is "a100" or "a100" plus letters ("A100X"),
	// not "a1000" (an RTX A1000 is not an A100).
	a100 = regexp.MustCompile(`^a100(?:[a-z]|$)`)
)

// Normalize maps a free-form GPU name to a catalog model: NVML names
// ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "Tesla T4"), canonical IDs
// in any case, and user spellings ("h100", "rtx 4090", "4090", "a100-80gb").
//
// Ambiguous names resolve as follows, each choice the one a buyer of that
// name on a market most often gets:
//   - plain "H100" is the H100 SXM; "H100 PCIe" and "H100 NVL" are H100-PCIe
//     (the NVL, a 94 GB PCIe board, is thereby underestimated, never over);
//   - plain "A100" is the A100 80GB unless the name or memory says 40 GB;
//   - "H200 NVL" is the H200 (the catalog row has the SXM figures);
//   - every V100 (16 or 32 GB, SXM2 or PCIe) is V100, every A10/A10G is A10.
//
// Names of models the catalog lacks (L40, L4, GH200, RTX 6000 Ada, A800,
// H800, ...) return false.
func Normalize(name string) (Model, bool) {
	return NormalizeWithMemory(name, 0)
}

// NormalizeWithMemory is Normalize with the device's memory in bytes, as NVML
// reports it (0 when unknown). Memory decides between catalog models that
// share a name, which today means the A100 40GB and 80GB: a measured capacity
// above 60 GiB is an 80GB board whatever the name says.
func NormalizeWithMemory(name string, memBytes uint64) (Model, bool) {
	lower := strings.ToLower(name)
	words := keyWords(lower)
	k := strings.Join(words, "")
	if k == "" {
		return Model{}, false
	}
	id, ok := aliases[k]
	if !ok {
		id, ok = matchPattern(k, words)
	}
	if !ok {
		return Model{}, false
	}
	if id == "A100-80GB" || id == "A100-40GB" {
		id = a100ByMemory(id, lower, memBytes)
	}
	return Lookup(id)
}

// matchPattern recognises NVML-style names by the model number they contain.
// Order matters: "h200" before "h100", "a100" before the "a10" token.
func matchPattern(k string, words []string) (string, bool) {
	has := func(w string) bool { return slices.Contains(words, w) }
	isA100 := func() bool { return slices.ContainsFunc(words, a100.MatchString) }
	switch {
	case strings.Contains(k, "gh200"):
		return "", false
	case strings.Contains(k, "h200"):
		return "H200", true
	case strings.Contains(k, "h100"):
		if strings.Contains(k, "pcie") || strings.Contains(k, "nvl") {
			return "H100-PCIe", true
		}
		return "H100-SXM", true
	case isA100():
		return "A100-80GB", true
	case strings.Contains(k, "l40s"):
		return "L40S", true
	case strings.Contains(k, "a6000"):
		return "A6000", true
	case has("a10") || has("a10g"):
		return "A10", true
	case strings.Contains(k, "4090"):
		return "RTX4090", true
	case strings.Contains(k, "3090"):
		return "RTX3090", true
	case strings.Contains(k, "v100"):
		return "V100", true
	case has("t4"):
		return "T4", true
	}
	return "", false
}

// a100ByMemory picks the A100 variant: measured memory first, then a capacity
// stated in the name, then the alias's choice.
func a100ByMemory(id, lowerName string, memBytes uint64) string {
	if memBytes > 0 {
		if memBytes > 60*GiB {
			return "A100-80GB"
		}
		return "A100-40GB"
	}
	for _, m := range memHint.FindAllStringSubmatch(lowerName, -1) {
		switch gb, _ := strconv.Atoi(m[1]); gb {
		case 40:
			return "A100-40GB"
		case 80:
			return "A100-80GB"
		}
	}
	return id
}

// keyWords splits lowerName into runs of letters and digits and drops the
// noise words.
func keyWords(lowerName string) []string {
	var words []string
	for _, w := range strings.FieldsFunc(lowerName, func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	}) {
		if !noise[w] {
			words = append(words, w)
		}
	}
	return words
}

// key is the form names are compared in: lower case, noise words dropped,
// punctuation and spaces removed ("NVIDIA GeForce RTX 4090" → "rtx4090").
func key(name string) string {
	return strings.Join(keyWords(strings.ToLower(name)), "")
}

// lookupAlias resolves an exact spelling (any case and punctuation) without
// the loose patterns of Normalize.
func lookupAlias(s string) (Model, bool) {
	id, ok := aliases[key(s)]
	if !ok {
		return Model{}, false
	}
	return Lookup(id)
}
