package checker

import (
	"math"
	"slices"
)

// nearestRankQuantile returns the q-quantile (0 <= q <= 1) of sorted by the
// nearest-rank method, so the result is always one of the samples: q = 0 is
// the minimum and q = 1 the maximum. It returns 0 for no samples.
func nearestRankQuantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps a product such as 0.99 x 200, which floating point
	// puts a hair above 198, from moving up one rank.
	rank := int(math.Ceil(q*float64(len(sorted))-1e-9)) - 1
	rank = min(max(rank, 0), len(sorted)-1)
	return sorted[rank]
}

// latencyQuantiles are the quantiles a latency summary reports, by the
// suffix of their stat name.
var latencyQuantiles = []struct {
	suffix string
	q      float64
}{
	{"p0", 0}, {"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}, {"p100", 1},
}

// addLatencyStats sorts samples (milliseconds) and stores each quantile of
// latencyQuantiles in stats as prefix + "-p50-ms" and so on. It stores
// nothing for no samples, so a missing stat means "not measured", not 0.
func addLatencyStats(stats map[string]float64, prefix string, samples []float64) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	for _, lq := range latencyQuantiles {
		stats[prefix+"-"+lq.suffix+"-ms"] = nearestRankQuantile(samples, lq.q)
	}
}

// nanosToMillis converts a history duration in nanoseconds to milliseconds.
func nanosToMillis(ns int64) float64 {
	return float64(ns) / 1e6
}
