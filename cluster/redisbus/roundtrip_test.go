package redisbus

import (
	"testing"
	"time"
)

func TestRoundTripEstimate(t *testing.T) {
	var r roundTrip
	t0 := time.Unix(1000, 0)
	if got := r.estimate(t0); got != 0 {
		t.Fatalf("estimate before any pipeline = %v, want 0", got)
	}

	// A longer sample is taken at once.
	r.start(t0)
	r.finish(t0, t0.Add(80*time.Millisecond))
	if got := r.estimate(t0); got != 80*time.Millisecond {
		t.Fatalf("estimate after an 80ms round trip = %v, want 80ms", got)
	}

	// A shorter one moves the estimate by an eighth of the difference.
	r.start(t0)
	r.finish(t0, t0.Add(8*time.Millisecond))
	if got := r.estimate(t0); got != 71*time.Millisecond {
		t.Fatalf("estimate after an 8ms round trip = %v, want 71ms", got)
	}

	// A pipeline still waiting counts with its age, which can exceed the
	// estimate when the link just became slower.
	r.start(t0)
	if got := r.estimate(t0.Add(500 * time.Millisecond)); got != 500*time.Millisecond {
		t.Fatalf("estimate with a pipeline waiting 500ms = %v, want 500ms", got)
	}
	if got := r.estimate(t0.Add(10 * time.Millisecond)); got != 71*time.Millisecond {
		t.Fatalf("estimate with a pipeline waiting 10ms = %v, want the smoothed 71ms", got)
	}
}
