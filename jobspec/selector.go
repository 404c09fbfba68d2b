package jobspec

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// BidSelectors are the rankings a job can use to choose among the market's
// bids, alone or as a weighted mix. Callers must not modify it.
var BidSelectors = []string{"cheapest", "throughput-per-dollar", "reliable", "nearest", "spread"}

// SelectorWeight is one term of a bid selector: a ranking from BidSelectors
// and its weight in the mix.
type SelectorWeight struct {
	Name   string
	Weight float64 // positive and finite; 1 when the selector is not a mix
}

// ParseBidSelector reads a bid selector: one name from BidSelectors, such as
// "cheapest", or a weighted mix of distinct names written as
// "cheapest:0.5,reliable:0.5". A name in a mix written without ":weight"
// weighs 1. Weights need not sum to 1; callers normalize them. The error's
// text says what is wrong and how to write it instead.
func ParseBidSelector(s string) ([]SelectorWeight, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty bid selector; use one of %s, or a weighted mix such as cheapest:0.5,reliable:0.5", oneOf(BidSelectors))
	}
	var out []SelectorWeight
	for _, term := range strings.Split(s, ",") {
		name, weight, hasWeight := strings.Cut(strings.TrimSpace(term), ":")
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("%s has an empty term; write name:weight pairs separated by commas, such as cheapest:0.5,reliable:0.5", quote(s))
		}
		if !slices.Contains(BidSelectors, name) {
			msg := fmt.Sprintf("unknown bid selector %s; use one of %s, or a weighted mix such as cheapest:0.5,reliable:0.5", quote(name), oneOf(BidSelectors))
			if g := suggest(name, BidSelectors); g != "" {
				msg = fmt.Sprintf("unknown bid selector %s; did you mean %q?", quote(name), g)
			}
			return nil, errors.New(msg)
		}
		for _, prev := range out {
			if prev.Name == name {
				return nil, fmt.Errorf("%s appears twice in %s; list each selector once", name, quote(s))
			}
		}
		w := 1.0
		if hasWeight {
			weight = strings.TrimSpace(weight)
			f, err := strconv.ParseFloat(weight, 64)
			if !isFloatSyntax(weight) || err != nil {
				return nil, fmt.Errorf("the weight of %s is %s, not a number; write name:weight, such as %s:0.5", name, quote(weight), name)
			}
			if !(f > 0) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("the weight of %s must be a positive number, got %s", name, weight)
			}
			w = f
		}
		out = append(out, SelectorWeight{Name: name, Weight: w})
	}
	return out, nil
}
