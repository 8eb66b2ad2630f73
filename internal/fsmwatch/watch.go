// Package fsmwatch lets tests and the demo wait for machine transitions: an
// fsm.Observer that copies every record into a channel, and a waiter with a
// deadline. It never slows the loop: when the channel is full, records are
// dropped and counted.
package fsmwatch

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
)

// Watch is an fsm.Observer feeding a channel.
type Watch struct {
	C       chan fsm.Record
	dropped atomic.Uint64
}

// New returns a watch with room for n records.
func New(n int) *Watch { return &Watch{C: make(chan fsm.Record, n)} }

// Observe implements fsm.Observer.
func (w *Watch) Observe(r fsm.Record) {
	select {
	case w.C <- r:
	default:
		w.dropped.Add(1)
	}
}

// Dropped counts records lost because nobody read them.
func (w *Watch) Dropped() uint64 { return w.dropped.Load() }

// Until reads records until one of machine enters state (or a substate of
// it, by name prefix), or the timeout passes. It returns the records read.
func (w *Watch) Until(machine string, state fsm.State, timeout time.Duration) ([]fsm.Record, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var seen []fsm.Record
	for {
		select {
		case r := <-w.C:
			seen = append(seen, r)
			if r.Machine == machine && !r.Internal && within(r.To, state) {
				return seen, nil
			}
		case <-deadline.C:
			return seen, fmt.Errorf("fsmwatch: %s did not enter %s within %v (saw %d records)", machine, state, timeout, len(seen))
		}
	}
}

func within(s, in fsm.State) bool {
	return s == in || len(s) > len(in) && s[:len(in)] == in && s[len(in)] == '.'
}

// Changes is an fsm.Observer that says "something moved": every transition
// leaves one token in a channel of capacity one, so a burst of transitions
// wakes a waiter once. A harness that needs a derived condition (a status
// that is a function of many machines) re-checks it on each token instead
// of polling the status on a clock.
type Changes struct {
	c chan struct{}
}

// NewChanges returns an observer with no token pending.
func NewChanges() *Changes { return &Changes{c: make(chan struct{}, 1)} }

// Observe implements fsm.Observer; it never blocks the loop.
func (ch *Changes) Observe(fsm.Record) {
	select {
	case ch.c <- struct{}{}:
	default:
	}
}

// C is the token channel.
func (ch *Changes) C() <-chan struct{} { return ch.c }

// ErrTimeout is returned by Wait when the condition did not hold in time.
var ErrTimeout = errors.New("fsmwatch: condition not reached in time")

// Wait checks ok now and again after every transition the observer sees,
// until ok reports true, ok fails, ctx ends or the timeout passes. It never
// wakes on a clock of its own: only a transition (or the deadline) does.
func (ch *Changes) Wait(ctx context.Context, timeout time.Duration, ok func() (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		done, err := ok()
		if err != nil || done {
			return err
		}
		select {
		case <-ch.c:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w (%v)", ErrTimeout, timeout)
		}
	}
}
