package pubsub

import (
	"sync"

	"github.com/wscluster/wscluster/wsconn"
)

// inFlight bounds each connection's publishes that wait for the backplane.
// A connection that reaches the bound waits, with its reader, until one of them
// has its result, so a fast publisher is slowed down rather than queued without
// limit.
type inFlight struct {
	limit int

	mu    sync.Mutex
	slots map[*wsconn.Conn]chan struct{}
}

// acquire takes one of c's slots, waiting while all are taken, and returns
// the function that gives it back.
func (f *inFlight) acquire(c *wsconn.Conn) (release func()) {
	f.mu.Lock()
	slots := f.slots[c]
	if slots == nil {
		slots = make(chan struct{}, f.limit)
		f.slots[c] = slots
	}
	f.mu.Unlock()
	slots <- struct{}{}
	return func() { <-slots }
}

// forget drops c's slots once it disconnected. Publishes still in flight
// give their slots back to the dropped channel, which nothing waits on.
func (f *inFlight) forget(c *wsconn.Conn) {
	f.mu.Lock()
	delete(f.slots, c)
	f.mu.Unlock()
}
