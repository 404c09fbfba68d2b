package lease

import (
	"fmt"
	"strings"
	"time"

	"cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
)

// MicrosPerUnit is how many micro-units make one display unit (1 USDC =
// 1,000,000 uusdc).
const MicrosPerUnit = 1_000_000

// Coin parses a decimal amount ("2.5") in denom exactly.
func Coin(amount, denom string) (sdk.DecCoin, error) {
	d, err := math.LegacyNewDecFromStr(amount)
	if err != nil {
		return sdk.DecCoin{}, fmt.Errorf("%w: amount %q: %v", ErrInvalid, amount, err)
	}
	if d.IsNegative() {
		return sdk.DecCoin{}, fmt.Errorf("%w: amount %q is negative", ErrInvalid, amount)
	}
	if err := sdk.ValidateDenom(denom); err != nil {
		return sdk.DecCoin{}, fmt.Errorf("%w: denom %q: %v", ErrInvalid, denom, err)
	}
	return sdk.NewDecCoinFromDec(denom, d), nil
}

// FromMicroUSD converts millionths of a US dollar (megha's job spec unit)
// into uusdc: one for one.
func FromMicroUSD(micros int64) sdk.DecCoin {
	return sdk.NewDecCoinFromDec(DefaultDenom, math.LegacyNewDec(micros))
}

// ToMicroUSD converts a uusdc amount to whole millionths of a US dollar,
// rounding up (spend is never understated).
func ToMicroUSD(c sdk.DecCoin) int64 {
	return c.Amount.Ceil().TruncateInt64()
}

// BlocksPerHour is 3600 s ÷ blockTime, exactly (600 for Akash's 6 s).
func BlocksPerHour(blockTime time.Duration) math.LegacyDec {
	if blockTime <= 0 {
		return math.LegacyZeroDec()
	}
	return math.LegacyNewDec(int64(time.Hour)).QuoInt64(int64(blockTime))
}

// PerGPUHour converts a price per block for a lease of gpus GPUs into a
// price per GPU-hour.
func PerGPUHour(perBlock sdk.DecCoin, gpus int, blockTime time.Duration) sdk.DecCoin {
	if gpus <= 0 {
		gpus = 1
	}
	return sdk.NewDecCoinFromDec(perBlock.Denom, perBlock.Amount.Mul(BlocksPerHour(blockTime)).QuoInt64(int64(gpus)))
}

// PerBlock converts a price per GPU-hour into the price per block of a
// lease of gpus GPUs.
func PerBlock(perGPUHour sdk.DecCoin, gpus int, blockTime time.Duration) sdk.DecCoin {
	bph := BlocksPerHour(blockTime)
	if bph.IsZero() {
		return sdk.NewDecCoinFromDec(perGPUHour.Denom, math.LegacyZeroDec())
	}
	return sdk.NewDecCoinFromDec(perGPUHour.Denom, perGPUHour.Amount.MulInt64(int64(max(gpus, 1))).Quo(bph))
}

// Format renders an amount for people: uusdc as dollars ("$2.10"), other
// denominations as the coin ("1.5uakt").
func Format(c sdk.DecCoin) string {
	if c.Denom == DefaultDenom {
		usd := c.Amount.QuoInt64(MicrosPerUnit)
		s := usd.String()
		// Trim the 18 decimals to cents, keeping sub-cent precision if any.
		whole, frac, _ := strings.Cut(s, ".")
		frac = strings.TrimRight(frac, "0")
		for len(frac) < 2 {
			frac += "0"
		}
		return "$" + whole + "." + frac
	}
	return c.String()
}

// Zero is the zero amount of denom.
func Zero(denom string) sdk.DecCoin { return sdk.NewDecCoinFromDec(denom, math.LegacyZeroDec()) }
