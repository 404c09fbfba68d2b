package shard

import (
	"cmp"
	"slices"
)

// lenOf returns the number of samples in rs.
func lenOf(rs []Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

// splitAt cuts rs, read in order, after its first n samples: head holds
// them (all of rs if it has fewer) and tail the rest. Both are new slices.
func splitAt(rs []Range, n uint64) (head, tail []Range) {
	for i, r := range rs {
		if n == 0 {
			return head, append(tail, rs[i:]...)
		}
		if l := r.Len(); l <= n {
			head = append(head, r)
			n -= l
			continue
		}
		head = append(head, Range{r.Start, r.Start + n})
		tail = append(tail, Range{r.Start + n, r.End})
		return head, append(tail, rs[i+1:]...)
	}
	return head, nil
}

// appendRange appends r to rs, extending rs's last range instead when r
// starts where it ends. Empty ranges are dropped. rs must not be shared.
func appendRange(rs []Range, r Range) []Range {
	if r.Len() == 0 {
		return rs
	}
	if n := len(rs); n > 0 && rs[n-1].End == r.Start {
		rs[n-1].End = r.End
		return rs
	}
	return append(rs, r)
}

// appendRanges appends each of add to rs with appendRange.
func appendRanges(rs []Range, add []Range) []Range {
	for _, r := range add {
		rs = appendRange(rs, r)
	}
	return rs
}

// merged returns disjoint rs sorted by Start with touching ranges joined,
// as a new slice (nil if rs is empty). Order does not matter among consumed samples, so a
// worker's consumed ranges are kept this way.
func merged(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(x, y Range) int { return cmp.Compare(x.Start, y.Start) })
	return appendRanges(make([]Range, 0, len(s)), s)
}
