package jobspec

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MicrosPerUSD is the number of micros (the unit of the API's *_micros
// fields) in one US dollar.
const MicrosPerUSD = 1_000_000

const usdDecimals = 6

// ParseUSD reads a non-negative amount of US dollars written as a plain
// decimal, such as "1.50", "25" or "0.000001", and returns it in micros
// (millionths of a dollar), exactly: "0.1" is 100000, with no float in
// between. It rejects signs, currency symbols, thousands separators,
// exponents, NaN and infinities, more than six decimal places, and amounts
// that do not fit in an int64. Error messages say what to write instead.
func ParseUSD(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	wholeOK := whole == "" || isDigits(whole)
	fracOK := frac == "" || isDigits(frac)
	if !wholeOK || !fracOK || whole == "" && frac == "" {
		return 0, errors.New(usdSyntaxHint(s))
	}
	if len(frac) > usdDecimals {
		return 0, fmt.Errorf("%s has %d decimal places; write at most %d (amounts are kept in millionths of a dollar)", s, len(frac), usdDecimals)
	}
	frac += strings.Repeat("0", usdDecimals-len(frac))
	f, _ := strconv.ParseInt(frac, 10, 64)
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		return f, nil
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > (math.MaxInt64-f)/MicrosPerUSD {
		return 0, fmt.Errorf("%s is too large; the largest amount is %s", s, FormatUSD(math.MaxInt64))
	}
	return w*MicrosPerUSD + f, nil
}

// usdSyntaxHint explains why s is not a plain decimal amount.
func usdSyntaxHint(s string) string {
	t := strings.ToLower(strings.TrimLeft(s, "+-."))
	switch {
	case s == "":
		return "expected an amount in US dollars like 1.50, found nothing"
	case strings.HasPrefix(s, "-"):
		return fmt.Sprintf("must not be negative, found %s", s)
	case t == "nan" || t == "inf" || t == "infinity":
		return fmt.Sprintf("must be a finite amount like 1.50, found %s", quote(s))
	case strings.HasPrefix(s, "$") || strings.HasPrefix(s, "US$"):
		return fmt.Sprintf("write the amount without a currency sign, like %s", strings.TrimPrefix(strings.TrimPrefix(s, "US"), "$"))
	case strings.HasPrefix(s, "+"):
		return fmt.Sprintf("write the amount without a sign, like %s", s[1:])
	case strings.Contains(s, ",") && isDigits(strings.NewReplacer(",", "", ".", "").Replace(s)):
		return fmt.Sprintf("write the amount without thousands separators, like %s", strings.ReplaceAll(s, ",", ""))
	case strings.ContainsAny(s, "eE") && isFloatSyntax(s):
		if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 && v < 1e15 {
			return fmt.Sprintf("%s is in exponent notation; write a plain decimal like %s", s, strconv.FormatFloat(v, 'f', -1, 64))
		}
		return fmt.Sprintf("%s is in exponent notation; write a plain decimal like 1.50", s)
	}
	return fmt.Sprintf("expected an amount in US dollars like 1.50, found %s", quote(s))
}

// FormatUSD writes micros as US dollars with at least two decimal places and
// no trailing zeros beyond them: 1500000 is "1.50", 1234567 is "1.234567".
// ParseUSD(FormatUSD(m)) == m for every m >= 0.
func FormatUSD(micros int64) string {
	sign := ""
	u := uint64(micros)
	if micros < 0 {
		sign = "-"
		u = -u
	}
	frac := fmt.Sprintf("%06d", u%MicrosPerUSD)
	frac = strings.TrimRight(frac, "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return sign + strconv.FormatUint(u/MicrosPerUSD, 10) + "." + frac
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isFloatSyntax reports whether s is a decimal number in the syntax the
// parser accepts for floats: an optional sign, digits with an optional
// fraction, and an optional exponent.
func isFloatSyntax(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}
