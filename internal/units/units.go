// Package units formats quantities for people.
package units

import "fmt"

// Bytes renders a byte count with binary units: 512 B, 1.5 KiB, 3.0 MiB,
// 1.25 GiB.
func Bytes(n int64) string {
	f := float64(n)
	switch {
	case f >= 1<<30:
		return fmt.Sprintf("%.2f GiB", f/(1<<30))
	case f >= 1<<20:
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	case f >= 1<<10:
		return fmt.Sprintf("%.1f KiB", f/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
