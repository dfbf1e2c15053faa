package server

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWorkerPoolRunsEveryTask(t *testing.T) {
	p := newWorkerPool()
	var ran atomic.Int64
	var wg sync.WaitGroup

	// More concurrent callers than idle workers, so that the pool both
	// reuses workers and starts extra ones.
	for range 4 * maxIdleWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				p.run(func() { ran.Add(1) })
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(4*maxIdleWorkers*20), ran.Load())
	assert.LessOrEqual(t, len(p.idle), maxIdleWorkers)
}

func TestWorkerPoolRunReturnsAfterTask(t *testing.T) {
	p := newWorkerPool()
	done := false
	p.run(func() { done = true })
	assert.True(t, done, "run returned before its task finished")
}

// deepTask uses about 8 KiB of stack, as handling a request does.
//
//go:noinline
func deepTask(depth int) int {
	var pad [256]byte
	pad[depth%len(pad)] = byte(depth)
	if depth == 0 {
		return int(pad[0])
	}
	return deepTask(depth-1) + int(pad[depth%len(pad)])
}

func BenchmarkHandleOnNewGoroutine(b *testing.B) {
	done := make(chan struct{})
	for b.Loop() {
		go func() {
			deepTask(30)
			done <- struct{}{}
		}()
		<-done
	}
}

func BenchmarkHandleOnPooledWorker(b *testing.B) {
	p := newWorkerPool()
	for b.Loop() {
		p.run(func() { deepTask(30) })
	}
}
