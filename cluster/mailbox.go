package cluster

import "sync"

// mailbox is an unbounded FIFO queue whose senders never wait, read by one
// goroutine that waits on wake. The loop's inbox and the acknowledgement
// queue both use it, because their senders hold locks of their own or are
// the loop itself.
type mailbox[T any] struct {
	// wake has a value whenever items were put since the last take.
	wake chan struct{}

	mu     sync.Mutex
	items  []T
	closed bool
}

func newMailbox[T any]() *mailbox[T] {
	return &mailbox[T]{wake: make(chan struct{}, 1)}
}

// put appends items and wakes the reader. It returns false, and queues
// nothing, once the mailbox is closed.
func (m *mailbox[T]) put(items ...T) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	m.items = append(m.items, items...)
	m.mu.Unlock()
	m.signal()
	return true
}

// take removes and returns every queued item, and reports whether the
// mailbox is closed.
func (m *mailbox[T]) take() ([]T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := m.items
	m.items = nil
	return items, m.closed
}

// close makes later puts fail and wakes the reader. Items already queued
// stay for take.
func (m *mailbox[T]) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox[T]) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
