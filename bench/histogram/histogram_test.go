package histogram

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBucketRoundTrip(t *testing.T) {
	// Every value must fall in a bucket whose top is at least the value
	// and at most 1/128 above it.
	for _, v := range []uint64{1, 2, 127, 128, 129, 255, 256, 257, 1000, 65535, 1 << 20, 1<<38 + 12345} {
		top := bucketUpper(bucketOf(v))
		assert.GreaterOrEqual(t, top, v, "value %d", v)
		assert.LessOrEqual(t, float64(top-v), float64(v)/histogramSubBuckets+1, "value %d", v)
	}
}

func TestBucketsAreOrdered(t *testing.T) {
	prev := -1
	for v := uint64(1); v < 1<<22; v = v*11/10 + 1 {
		b := bucketOf(v)
		require.GreaterOrEqual(t, b, prev, "value %d", v)
		prev = b
	}
}

func TestQuantilesMatchSortedSample(t *testing.T) {
	h := New()
	r := rand.New(rand.NewPCG(1, 2))
	var values []time.Duration
	for range 100000 {
		v := time.Duration(r.ExpFloat64()*2000) * time.Microsecond
		values = append(values, v)
		h.Record(v)
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	require.Equal(t, int64(len(values)), h.Count())
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := values[int(q*float64(len(values)))-1]
		got := h.Quantile(q)
		assert.InEpsilon(t, float64(want), float64(got), 0.02, "quantile %v", q)
	}
	assert.GreaterOrEqual(t, h.Max(), values[len(values)-1])
}

func TestSparseRoundTrip(t *testing.T) {
	h := New()
	for _, d := range []time.Duration{time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, time.Second} {
		h.Record(d)
	}
	other := New()
	require.True(t, other.AddSparse(h.Sparse()))
	assert.Equal(t, h.Count(), other.Count())
	assert.Equal(t, h.Quantile(0.5), other.Quantile(0.5))
	assert.Equal(t, h.Max(), other.Max())

	assert.False(t, other.AddSparse([][2]int64{{-1, 1}, {1 << 30, 1}}), "out-of-range buckets must be reported")
	assert.Equal(t, h.Count(), other.Count(), "out-of-range buckets must not count")
}

func TestEmptyHistogram(t *testing.T) {
	h := New()
	assert.Zero(t, h.Quantile(0.99))
	assert.Zero(t, h.Max())
	assert.Empty(t, h.Sparse())
}

func BenchmarkRecord(b *testing.B) {
	h := New()
	d := 1234 * time.Microsecond
	for b.Loop() {
		h.Record(d)
	}
}
