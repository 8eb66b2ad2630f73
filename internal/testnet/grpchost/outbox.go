package grpchost

import "sync"

// Outbox is the delivery queue of one open server stream. Producers Push from
// any goroutine; the stream's handler goroutine, the only one that calls Send
// on the gRPC stream, waits on Wake and Done and drains with Take. Finish ends
// the stream with a reason the handler returns.
type Outbox[T any] struct {
	limit int
	wake  chan struct{} // capacity 1: "the queue is not empty"
	done  chan struct{} // closed by the first Finish

	mu     sync.Mutex
	queue  []T
	err    error
	closed bool
}

// NewOutbox returns an open outbox that holds at most limit items.
func NewOutbox[T any](limit int) *Outbox[T] {
	return &Outbox[T]{limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Push queues v; false when the outbox is full or finished.
func (o *Outbox[T]) Push(v T) bool {
	o.mu.Lock()
	if o.closed || len(o.queue) >= o.limit {
		o.mu.Unlock()
		return false
	}
	o.queue = append(o.queue, v)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true
}

// Wake receives after a Push; Take then returns what is queued.
func (o *Outbox[T]) Wake() <-chan struct{} { return o.wake }

// Done is closed once the outbox is finished.
func (o *Outbox[T]) Done() <-chan struct{} { return o.done }

// Take empties the queue and returns what it held, oldest first.
func (o *Outbox[T]) Take() []T {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queue
	o.queue = nil
	return q
}

// Finish ends the outbox with err, dropping what is queued. Only the first
// call counts; it reports whether it was that one.
func (o *Outbox[T]) Finish(err error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	var zero []T
	o.closed, o.err, o.queue = true, err, zero
	close(o.done)
	return true
}

// Err is the reason given to the first Finish (nil while open).
func (o *Outbox[T]) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
