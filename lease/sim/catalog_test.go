package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultCatalogParses(t *testing.T) {
	if _, err := ParseCatalog(DefaultCatalogYAML()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, DefaultCatalogYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadCatalog(path)
	if err != nil || len(c.Providers) != len(DefaultCatalog().Providers) {
		t.Fatalf("LoadCatalog: %v", err)
	}
}

func TestCatalogErrorsNameProviderAndField(t *testing.T) {
	const ok = "providers:\n  - name: p1\n    region: us-east\n    gpus: [{model: T4, count: 1}]\n"
	if _, err := ParseCatalog([]byte(ok)); err != nil {
		t.Fatalf("minimal catalog: %v", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty"},
		{"providers: []", "no providers"},
		{"provider: []", "field provider not found"},
		{strings.Replace(ok, "T4", "GTX1080", 1), "provider p1: gpus[0].model \"GTX1080\": unknown GPU model; known: H200, H100-SXM"},
		{strings.Replace(ok, "count: 1", "count: 0", 1), "provider p1: gpus[0].count 0"},
		{strings.Replace(ok, "name: p1", "name: \"\"", 1), "provider #1: name"},
		{strings.Replace(ok, "region: us-east", "region: \"\"", 1), "provider p1: region"},
		{ok + "    mtbf: soon\n", "provider p1: mtbf \"soon\""},
		{ok + "    pricing: {position: 2}\n", "provider p1: pricing.position 2"},
		{ok + "    reclaim: {probability: -1}\n", "provider p1: reclaim.probability -1"},
		{ok + "    reliability: 1.5\n", "provider p1: reliability 1.5"},
		{ok + "    attributes: {tier: garage}\n", "provider p1: attributes.tier \"garage\""},
		{ok + "    gpus: [{model: T4, count: 1, min_usd: 2, max_usd: 1}]\n", "mapping key \"gpus\" already defined"},
		{strings.Replace(ok, "count: 1}", "count: 1, min_usd: 2, max_usd: 1}", 1), "provider p1: gpus[0]: min_usd 2, max_usd 1"},
		{ok + strings.ReplaceAll(ok, "providers:\n", ""), "provider p1: name used twice"},
	} {
		_, err := ParseCatalog([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCatalog(%q):\n got %v\nwant an error containing %q", tc.yaml, err, tc.want)
		}
	}
}

func FuzzParseCatalog(f *testing.F) {
	f.Add(DefaultCatalogYAML())
	f.Add([]byte("providers:\n  - name: p\n    region: r\n    gpus: [{model: T4, count: 1}]\n    mtbf: 1h\n"))
	f.Add([]byte("providers: [{name: a, region: b, gpus: [{model: L40S, count: 1024, min_usd: 1e-6, max_usd: 1e6}]}]"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCatalog(b)
		if err != nil {
			return
		}
		if len(c.Providers) == 0 {
			t.Fatal("accepted a catalog without providers")
		}
		for _, p := range c.Providers {
			for _, g := range p.GPUs {
				lo, hi := p.priceRange(g)
				if !(lo > 0 && lo <= hi) {
					t.Fatalf("provider %s %s: price range %g..%g", p.Name, g.Model, lo, hi)
				}
			}
		}
		if err := (&Catalog{Providers: c.Providers}).validate(); err != nil {
			t.Fatalf("a parsed catalog fails validation again: %v", err)
		}
	})
}
