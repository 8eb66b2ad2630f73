package fsm

import "sync"

// mailbox is the bounded queue other goroutines post into. Producers append
// under a short lock; the loop takes the whole pending batch at once, so one
// wake-up and one lock serve a burst of events. A full mailbox makes
// producers wait for the loop to take a batch (backpressure: network readers
// slow down instead of queueing without bound).
type mailbox struct {
	notify chan struct{} // capacity 1: "there is something pending"

	mu      sync.Mutex
	pending []Envelope
	spare   []Envelope
	limit   int
	space   chan struct{} // closed when a batch is taken, if producers wait
	waiting bool
}

func newMailbox(limit int) *mailbox {
	return &mailbox{
		notify:  make(chan struct{}, 1),
		pending: make([]Envelope, 0, limit),
		spare:   make([]Envelope, 0, limit),
		limit:   limit,
	}
}

// put appends e, waiting while the mailbox is full. It returns false if done
// is closed first.
func (b *mailbox) put(e Envelope, done <-chan struct{}) bool {
	b.mu.Lock()
	for len(b.pending) >= b.limit {
		if !b.waiting {
			b.waiting = true
			b.space = make(chan struct{})
		}
		space := b.space
		b.mu.Unlock()
		select {
		case <-space:
		case <-done:
			return false
		}
		b.mu.Lock()
	}
	b.pending = append(b.pending, e)
	wake := len(b.pending) == 1
	b.mu.Unlock()
	if wake {
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns everything pending. The caller hands the slice back with
// recycle when done with it.
func (b *mailbox) take() []Envelope {
	b.mu.Lock()
	batch := b.pending
	b.pending = b.spare[:0]
	b.spare = nil
	if b.waiting {
		b.waiting = false
		close(b.space)
	}
	b.mu.Unlock()
	return batch
}

func (b *mailbox) recycle(batch []Envelope) {
	clear(batch)
	b.mu.Lock()
	b.spare = batch[:0]
	b.mu.Unlock()
}
