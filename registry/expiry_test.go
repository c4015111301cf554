package registry

import (
	"testing"
	"time"

	"github.com/wharf-registry/wharf/batch"
)

// TestExpiryForNeverPassesTheMaximum: the batch endpoint's maximum (the
// proposal's 604800 s) is a maximum, and rounding to the signature cache's
// bucket never makes a URL live longer than asked by more than a bucket.
func TestExpiryForNeverPassesTheMaximum(t *testing.T) {
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, off := range []time.Duration{0, 1, 499 * time.Millisecond, 59 * time.Second, 4*time.Minute + 59*time.Second + 999*time.Millisecond} {
		now := base.Add(off)
		for _, d := range []time.Duration{batch.MinExpiry, 20 * time.Minute, batch.DefaultExpiry, 24 * time.Hour, batch.MaxExpiry - time.Second, batch.MaxExpiry, batch.MaxExpiry + time.Hour} {
			got := expiryFor(now, d)
			want := min(d, batch.MaxExpiry)
			if life := got.Sub(now); life > batch.MaxExpiry {
				t.Errorf("now+%v, expiry %v: URL lives %v, past the maximum %v", off, d, life, batch.MaxExpiry)
			}
			if life := got.Sub(now); life < want-time.Second || life > want+expiryBucket(want) {
				t.Errorf("now+%v, expiry %v: URL lives %v, want [%v, %v]", off, d, life, want-time.Second, want+expiryBucket(want))
			}
		}
	}
}
