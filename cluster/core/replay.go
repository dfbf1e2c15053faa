package core

import (
	"time"

	"github.com/wscluster/wscluster/backplane"
)

// replayItem is one publish of this node with its sequence number and the
// time it was published.
type replayItem struct {
	seq uint64
	at  time.Time
	msg backplane.Message
	// retracted publishes are never replayed.
	retracted bool
}

// replayBuffer keeps this node's recent publishes in sequence order, bounded
// by count and by age, so that a peer whose link broke can get exactly what
// it missed.
type replayBuffer struct {
	items    []replayItem
	maxItems int
	maxAge   time.Duration
	// droppedUpTo is the publish time of the newest item dropped so far.
	droppedUpTo time.Time
}

func (b *replayBuffer) add(item replayItem) {
	b.items = append(b.items, item)
	if len(b.items) > b.maxItems {
		b.drop(len(b.items) - b.maxItems)
	}
}

// retract marks the item with sequence number seq, if still kept.
func (b *replayBuffer) retract(seq uint64) {
	if len(b.items) == 0 || seq < b.items[0].seq {
		return
	}
	if i := int(seq - b.items[0].seq); i < len(b.items) {
		b.items[i].retracted = true
	}
}

// trim drops the items older than maxAge.
func (b *replayBuffer) trim(now time.Time) {
	cutoff := now.Add(-b.maxAge)
	n := 0
	for n < len(b.items) && b.items[n].at.Before(cutoff) {
		n++
	}
	b.drop(n)
}

// drop removes the n oldest items. The backing array is copied once it is
// mostly unused, so memory stays proportional to the items kept.
func (b *replayBuffer) drop(n int) {
	if n <= 0 {
		return
	}
	b.droppedUpTo = b.items[n-1].at
	clear(b.items[:n])
	b.items = b.items[n:]
	if cap(b.items) > 64 && len(b.items) < cap(b.items)/4 {
		b.items = append([]replayItem(nil), b.items...)
	}
}

// since returns the items with a sequence number of at least from and a
// publish time not before notBefore, and how many items from on were no
// longer in the buffer.
func (b *replayBuffer) since(from uint64, notBefore time.Time) (items []replayItem, lost uint64) {
	if len(b.items) == 0 {
		return nil, 0
	}
	first := b.items[0].seq
	if from < first {
		// Dropped items all older than notBefore were not wanted anyway,
		// as from a node that started after them, so they are no loss.
		if !b.droppedUpTo.Before(notBefore) {
			lost = first - from
		}
		from = first
	}
	start := int(from - first)
	if start >= len(b.items) {
		return nil, lost
	}
	items = b.items[start:]
	for len(items) > 0 && items[0].at.Before(notBefore) {
		items = items[1:]
	}
	return items, lost
}
