package redisbus

import (
	"sync/atomic"
	"time"
)

// roundTrip estimates how long Redis takes to reply over this node's link,
// from the PUBLISH pipelines. A subscription may stay silent for that long
// on top of its usual allowance before it counts as dead, so that a slow
// link is not mistaken for a broken one. A slow link that subscribed again
// would wait a round trip for the first message, and with a short
// allowance it would subscribe again and again.
type roundTrip struct {
	// smoothed is the estimate in nanoseconds: it follows a longer sample
	// at once and a shorter one by an eighth of the difference.
	smoothed atomic.Int64
	// pendingSince is when the pipeline waiting for its reply was sent, in
	// Unix nanoseconds, or 0 when none waits.
	pendingSince atomic.Int64
}

// start records that a pipeline was sent at now.
func (r *roundTrip) start(now time.Time) { r.pendingSince.Store(now.UnixNano()) }

// finish records that the pipeline sent at start got its reply at now.
func (r *roundTrip) finish(start, now time.Time) {
	r.pendingSince.Store(0)
	sample := int64(now.Sub(start))
	old := r.smoothed.Load()
	next := sample
	if sample < old {
		next = old - (old-sample)/8
	}
	r.smoothed.Store(next)
}

// estimate returns the longer of the smoothed round trip and the age of
// the pipeline still waiting for its reply, which bounds the round trip
// from below when the link just became slower.
func (r *roundTrip) estimate(now time.Time) time.Duration {
	est := time.Duration(r.smoothed.Load())
	if since := r.pendingSince.Load(); since != 0 {
		est = max(est, now.Sub(time.Unix(0, since)))
	}
	return est
}
