// Package histogram is a log-linear latency histogram in the manner of
// HdrHistogram, small enough to keep in the benchmark without a dependency.
package histogram

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in log-linear buckets, in the manner of
// HdrHistogram: every power of two from 1 µs up is split into
// histogramSubBuckets linear buckets, so a recorded value is off by at most
// 1/histogramSubBuckets (0.8 %) of itself. Values below 1 µs count as 1 µs
// and values above 2^39 µs (about 6 days) as the largest bucket.
//
// Record is safe for concurrent use and allocates nothing. The zero value is
// not ready: use New.
type Histogram struct {
	counts []atomic.Int64
}

const (
	// histogramSubBits sets the precision: 2^7 = 128 buckets per power of two.
	histogramSubBits    = 7
	histogramSubBuckets = 1 << histogramSubBits
	// histogramMagnitudes is the number of powers of two above the first
	// linear range; 2^(7+32) µs is about 6 days, far beyond any latency.
	histogramMagnitudes = 32
	histogramUnit       = time.Microsecond
)

// NewHistogram returns an empty histogram.
func New() *Histogram {
	return &Histogram{counts: make([]atomic.Int64, histogramSubBuckets*(histogramMagnitudes+1))}
}

// bucketOf maps a value in microseconds to its bucket index.
func bucketOf(v uint64) int {
	if v < histogramSubBuckets {
		return int(v)
	}
	// The magnitude is how far v's top bit is above the linear range; the
	// next histogramSubBits bits below the top bit pick the linear bucket.
	magnitude := bits.Len64(v) - histogramSubBits
	index := magnitude*histogramSubBuckets + int(v>>(magnitude-1)) - histogramSubBuckets
	if index >= histogramSubBuckets*(histogramMagnitudes+1) {
		return histogramSubBuckets*(histogramMagnitudes+1) - 1
	}
	return index
}

// bucketUpper returns the largest value, in microseconds, that falls in
// bucket index. Quantiles report it, so they never understate a latency.
func bucketUpper(index int) uint64 {
	if index < histogramSubBuckets {
		return uint64(index)
	}
	magnitude := index / histogramSubBuckets
	sub := uint64(index%histogramSubBuckets + histogramSubBuckets)
	return (sub+1)<<(magnitude-1) - 1
}

// Record counts one duration.
func (h *Histogram) Record(d time.Duration) {
	us := int64(d / histogramUnit)
	if us < 1 {
		us = 1
	}
	h.counts[bucketOf(uint64(us))].Add(1)
}

// Merge adds every count of other to h.
func (h *Histogram) Merge(other *Histogram) {
	for i := range other.counts {
		if n := other.counts[i].Load(); n != 0 {
			h.counts[i].Add(n)
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() int64 {
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	return total
}

// Quantile returns the value at quantile q (0.99 for p99), rounded up to the
// top of its bucket, or 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(bucketUpper(i)) * histogramUnit
		}
	}
	return time.Duration(bucketUpper(len(h.counts)-1)) * histogramUnit
}

// Max returns the top of the highest non-empty bucket, or 0.
func (h *Histogram) Max() time.Duration {
	for i := len(h.counts) - 1; i >= 0; i-- {
		if h.counts[i].Load() != 0 {
			return time.Duration(bucketUpper(i)) * histogramUnit
		}
	}
	return 0
}

// Sparse returns the non-empty buckets as index/count pairs, the form in
// which a load generator process hands its histogram to the driver.
func (h *Histogram) Sparse() [][2]int64 {
	var out [][2]int64
	for i := range h.counts {
		if n := h.counts[i].Load(); n != 0 {
			out = append(out, [2]int64{int64(i), n})
		}
	}
	return out
}

// AddSparse adds the counts of a Sparse form to h. Pairs with an index out of
// range are ignored and returned as false.
func (h *Histogram) AddSparse(pairs [][2]int64) bool {
	ok := true
	for _, p := range pairs {
		if p[0] < 0 || p[0] >= int64(len(h.counts)) || p[1] < 0 {
			ok = false
			continue
		}
		h.counts[p[0]].Add(p[1])
	}
	return ok
}
