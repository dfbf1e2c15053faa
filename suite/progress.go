package suite

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// progressInterval is how often the main phase prints a progress line.
const progressInterval = 2 * time.Second

// progress prints elapsed time, completed operations and the active faults
// until ctx ends or the returned stop function is called.
func (r *run) progress(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fmt.Fprintf(r.cfg.Progress, "[%6.1fs] ops %d  faults: %s\n", r.elapsed(), r.wl.Completed(), r.activeFaults())
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func (r *run) activeFaults() string {
	active := r.nem.Active()
	if len(active) == 0 {
		return "none"
	}
	parts := make([]string, len(active))
	for i, f := range active {
		parts[i] = f.Detail
	}
	return strings.Join(parts, "; ")
}
