package pubsub

import (
	"testing"
	"time"

	"github.com/wscluster/wscluster/wsconn"
)

// A connection holding every slot waits for a release, and another
// connection does not.
func TestInFlightBoundsEachConnection(t *testing.T) {
	f := inFlight{limit: 2, slots: make(map[*wsconn.Conn]chan struct{})}
	a, b := &wsconn.Conn{}, &wsconn.Conn{}
	releaseFirst := f.acquire(a)
	f.acquire(a)

	acquired := make(chan struct{})
	go func() {
		f.acquire(a)
		close(acquired)
	}()
	select {
	case <-acquired:
		t.Fatal("a third publish of a connection went in flight with a limit of 2")
	case <-time.After(50 * time.Millisecond):
	}

	other := make(chan struct{})
	go func() {
		f.acquire(b)
		close(other)
	}()
	select {
	case <-other:
	case <-time.After(2 * time.Second):
		t.Fatal("another connection waited for the first one's slots")
	}

	releaseFirst()
	select {
	case <-acquired:
	case <-time.After(2 * time.Second):
		t.Fatal("a released slot was not taken by the waiting publish")
	}
	f.forget(a)
	if len(f.slots) != 1 {
		t.Fatalf("forget left %d connections' slots, want 1", len(f.slots))
	}
}
