package sim

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/megha-ml/megha/worker/gpu"
	"gopkg.in/yaml.v3"
)

//go:embed catalog.yaml
var defaultCatalogYAML []byte

// DefaultCatalogYAML returns the YAML of the default catalog (a copy), a
// starting point for a custom one.
func DefaultCatalogYAML() []byte { return bytes.Clone(defaultCatalogYAML) }

// DefaultCatalog parses the embedded default catalog.
func DefaultCatalog() *Catalog {
	c, err := ParseCatalog(defaultCatalogYAML)
	if err != nil {
		panic("sim: embedded catalog.yaml: " + err.Error()) // TestDefaultCatalog keeps it valid
	}
	return c
}

// Catalog is the market's set of providers.
type Catalog struct {
	Providers []ProviderSpec `yaml:"providers"`
}

// ProviderSpec is one provider of a catalog.
type ProviderSpec struct {
	Name    string    `yaml:"name"`
	Region  string    `yaml:"region"`
	GPUs    []GPUSpec `yaml:"gpus"`
	Pricing Pricing   `yaml:"pricing"`
	// MTBF is the mean time between failures ("" never fails); MTTR how
	// long a failed provider stays down.
	MTBF string `yaml:"mtbf"`
	MTTR string `yaml:"mttr"`
	// Reclaim: the fraction of failures announced ahead, and how far.
	Reclaim       Reclaim           `yaml:"reclaim"`
	BandwidthMbps float64           `yaml:"bandwidth_mbps"`
	LatencyMs     float64           `yaml:"latency_ms"`
	Reliability   float64           `yaml:"reliability"` // initial uptime fraction, default 0.99
	Attributes    map[string]string `yaml:"attributes"`

	// Parsed durations, filled by ParseCatalog.
	mtbf, mttr, notice time.Duration
}

// GPUSpec is Count GPUs of one worker/gpu catalog model, optionally with
// an explicit price range in USD per GPU-hour.
type GPUSpec struct {
	Model  string  `yaml:"model"`
	Count  int     `yaml:"count"`
	MinUSD float64 `yaml:"min_usd"`
	MaxUSD float64 `yaml:"max_usd"`
}

// Pricing places a provider in each model's indicative price range: bids
// draw uniformly from Position ± Spread of [PriceLowUSD, PriceHighUSD].
type Pricing struct {
	Position float64 `yaml:"position"`
	Spread   float64 `yaml:"spread"`
}

// Reclaim says how failures are announced.
type Reclaim struct {
	Probability float64 `yaml:"probability"`
	Notice      string  `yaml:"notice"`
}

// Catalog bounds keep a hostile file from asking for absurd allocations.
const (
	maxProviders       = 1000
	maxGPUsPerProvider = 1024
)

// LoadCatalog reads and parses a catalog file.
func LoadCatalog(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: catalog: %w", err)
	}
	c, err := ParseCatalog(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseCatalog parses and validates a catalog. Errors name the provider
// and the field, and say what is accepted.
func ParseCatalog(b []byte) (*Catalog, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("sim: catalog is empty; want a `providers:` list")
		}
		return nil, fmt.Errorf("sim: catalog: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Catalog) validate() error {
	if len(c.Providers) == 0 {
		return errors.New("sim: catalog has no providers; want at least one under `providers:`")
	}
	if len(c.Providers) > maxProviders {
		return fmt.Errorf("sim: catalog has %d providers, at most %d", len(c.Providers), maxProviders)
	}
	seen := make(map[string]bool, len(c.Providers))
	for i := range c.Providers {
		p := &c.Providers[i]
		if err := p.validate(); err != nil {
			name := p.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return fmt.Errorf("sim: catalog: provider %s: %w", name, err)
		}
		if seen[p.Name] {
			return fmt.Errorf("sim: catalog: provider %s: name used twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func finiteIn(x, lo, hi float64) bool { return !math.IsNaN(x) && x >= lo && x <= hi }

func (p *ProviderSpec) validate() error {
	if !validName(p.Name) {
		return fmt.Errorf("name %q: want 1-64 letters, digits, '-', '_' or '.'", p.Name)
	}
	if !validName(p.Region) {
		return fmt.Errorf("region %q: want a region name such as us-east or eu-central", p.Region)
	}
	if len(p.GPUs) == 0 {
		return errors.New("gpus: empty; want at least one {model, count}")
	}
	total := 0
	models := make(map[string]bool, len(p.GPUs))
	for j, g := range p.GPUs {
		if _, ok := gpu.Lookup(g.Model); !ok {
			return fmt.Errorf("gpus[%d].model %q: unknown GPU model; known: %s", j, g.Model, strings.Join(gpu.ModelIDs(), ", "))
		}
		if models[g.Model] {
			return fmt.Errorf("gpus[%d].model %s: listed twice; add the counts", j, g.Model)
		}
		models[g.Model] = true
		if g.Count < 1 || g.Count > maxGPUsPerProvider {
			return fmt.Errorf("gpus[%d].count %d: want 1..%d", j, g.Count, maxGPUsPerProvider)
		}
		total += g.Count
		if g.MinUSD != 0 || g.MaxUSD != 0 {
			if !finiteIn(g.MinUSD, 1e-6, 1e6) || !finiteIn(g.MaxUSD, g.MinUSD, 1e6) {
				return fmt.Errorf("gpus[%d]: min_usd %g, max_usd %g: want 0 < min_usd <= max_usd (USD per GPU-hour), or neither", j, g.MinUSD, g.MaxUSD)
			}
		}
	}
	if total > maxGPUsPerProvider {
		return fmt.Errorf("gpus: %d in all, at most %d", total, maxGPUsPerProvider)
	}
	if !finiteIn(p.Pricing.Position, 0, 1) {
		return fmt.Errorf("pricing.position %g: want 0 (the model's low price) to 1 (its high price)", p.Pricing.Position)
	}
	if !finiteIn(p.Pricing.Spread, 0, 1) {
		return fmt.Errorf("pricing.spread %g: want 0 to 1", p.Pricing.Spread)
	}
	var err error
	if p.mtbf, err = parseDur("mtbf", p.MTBF); err != nil {
		return err
	}
	if p.mttr, err = parseDur("mttr", p.MTTR); err != nil {
		return err
	}
	if p.notice, err = parseDur("reclaim.notice", p.Reclaim.Notice); err != nil {
		return err
	}
	if !finiteIn(p.Reclaim.Probability, 0, 1) {
		return fmt.Errorf("reclaim.probability %g: want 0 to 1", p.Reclaim.Probability)
	}
	if !finiteIn(p.BandwidthMbps, 0, 1e7) {
		return fmt.Errorf("bandwidth_mbps %g: want 0 to 1e7", p.BandwidthMbps)
	}
	if !finiteIn(p.LatencyMs, 0, 1e5) {
		return fmt.Errorf("latency_ms %g: want 0 to 1e5", p.LatencyMs)
	}
	if p.Reliability == 0 {
		p.Reliability = 0.99
	}
	if !finiteIn(p.Reliability, 1e-3, 1) {
		return fmt.Errorf("reliability %g: want an uptime fraction in (0, 1]", p.Reliability)
	}
	if t, ok := p.Attributes["tier"]; ok && t != "datacenter" && t != "consumer" {
		return fmt.Errorf("attributes.tier %q: want datacenter or consumer", t)
	}
	if a, ok := p.Attributes["audited"]; ok && a != "true" && a != "false" {
		return fmt.Errorf("attributes.audited %q: want \"true\" or \"false\"", a)
	}
	return nil
}

func parseDur(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q: want a non-negative Go duration such as 72h or 90s", field, s)
	}
	return d, nil
}

// priceRange is the provider's range for model in USD per GPU-hour.
func (p *ProviderSpec) priceRange(g GPUSpec) (lo, hi float64) {
	if g.MinUSD != 0 || g.MaxUSD != 0 {
		return g.MinUSD, g.MaxUSD
	}
	m, _ := gpu.Lookup(g.Model)
	width := m.PriceHighUSD - m.PriceLowUSD
	lo = m.PriceLowUSD + width*math.Max(0, p.Pricing.Position-p.Pricing.Spread)
	hi = m.PriceLowUSD + width*math.Min(1, p.Pricing.Position+p.Pricing.Spread)
	return lo, hi
}
