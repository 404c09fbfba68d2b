package jobspec

import (
	"math"
	"testing"
)

func TestParseUSD(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"0.0", 0},
		{"1", 1_000_000},
		{"1.5", 1_500_000},
		{"1.50", 1_500_000},
		{"0.1", 100_000},
		{"0.3", 300_000},
		{"2.675", 2_675_000},
		{"0.000001", 1},
		{"123.456789", 123_456_789},
		{".5", 500_000},
		{"5.", 5_000_000},
		{"007.25", 7_250_000},
		{"1000", 1_000_000_000},
		{"9223372036854.775807", math.MaxInt64},
		{"000000000000000000000000000000001.000000", 1_000_000},
	}
	for _, tt := range tests {
		got, err := ParseUSD(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseUSDErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "expected an amount in US dollars like 1.50, found nothing"},
		{".", `expected an amount in US dollars like 1.50, found "."`},
		{"1.2.3", `expected an amount in US dollars like 1.50, found "1.2.3"`},
		{"one", `expected an amount in US dollars like 1.50, found "one"`},
		{"1 50", `expected an amount in US dollars like 1.50, found "1 50"`},
		{"0.1234567", "0.1234567 has 7 decimal places; write at most 6 (amounts are kept in millionths of a dollar)"},
		{"1.0000000", "1.0000000 has 7 decimal places; write at most 6 (amounts are kept in millionths of a dollar)"},
		{"-1.50", "must not be negative, found -1.50"},
		{"-0", "must not be negative, found -0"},
		{"+1.50", "write the amount without a sign, like 1.50"},
		{"$1.50", "write the amount without a currency sign, like 1.50"},
		{"1,000.00", "write the amount without thousands separators, like 1000.00"},
		{"1e3", "1e3 is in exponent notation; write a plain decimal like 1000"},
		{"1.5E-1", "1.5E-1 is in exponent notation; write a plain decimal like 0.15"},
		{"1e300", "1e300 is in exponent notation; write a plain decimal like 1.50"},
		{".nan", `must be a finite amount like 1.50, found ".nan"`},
		{"NaN", `must be a finite amount like 1.50, found "NaN"`},
		{".inf", `must be a finite amount like 1.50, found ".inf"`},
		{"Infinity", `must be a finite amount like 1.50, found "Infinity"`},
		{"9223372036854.775808", "9223372036854.775808 is too large; the largest amount is 9223372036854.775807"},
		{"9223372036855", "9223372036855 is too large; the largest amount is 9223372036854.775807"},
		{"99999999999999999999999", "99999999999999999999999 is too large; the largest amount is 9223372036854.775807"},
		{"0x10", `expected an amount in US dollars like 1.50, found "0x10"`},
		{"1_000", `expected an amount in US dollars like 1.50, found "1_000"`},
	}
	for _, tt := range tests {
		got, err := ParseUSD(tt.in)
		if err == nil || err.Error() != tt.msg {
			t.Errorf("ParseUSD(%q) = %d, %v\nwant error %q", tt.in, got, err, tt.msg)
		}
	}
}

func TestFormatUSD(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0.00"},
		{1, "0.000001"},
		{10_000, "0.01"},
		{100_000, "0.10"},
		{1_500_000, "1.50"},
		{1_234_567, "1.234567"},
		{25_000_000, "25.00"},
		{math.MaxInt64, "9223372036854.775807"},
		{-1_500_000, "-1.50"},
		{math.MinInt64, "-9223372036854.775808"},
	}
	for _, tt := range tests {
		if got := FormatUSD(tt.in); got != tt.want {
			t.Errorf("FormatUSD(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUSDRoundTrip(t *testing.T) {
	for _, m := range []int64{0, 1, 9, 10, 99, 100_000, 999_999, 1_000_000, 1_000_001, 123_456_789_012, math.MaxInt64 - 1, math.MaxInt64} {
		got, err := ParseUSD(FormatUSD(m))
		if err != nil || got != m {
			t.Errorf("ParseUSD(FormatUSD(%d)) = %d, %v", m, got, err)
		}
	}
}
