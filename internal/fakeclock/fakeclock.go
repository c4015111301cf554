// Package fakeclock is the clock tests move by hand: registry, server,
// client and auth all take a Now func, and tests give them Clock.Now.
package fakeclock

import (
	"sync/atomic"
	"time"
)

// Clock starts at the real time and moves only when Advance is called.
// It is safe for concurrent use (servers read it from their handlers).
type Clock struct{ ns atomic.Int64 }

// New returns a Clock at the current time.
func New() *Clock {
	c := &Clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
