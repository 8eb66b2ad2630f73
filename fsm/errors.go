package fsm

import "errors"

var (
	// ErrBadSpec: a Spec is inconsistent (unknown state, missing initial, ...).
	ErrBadSpec = errors.New("fsm: bad spec")
	// ErrStopped: the loop has stopped; the event was not delivered.
	ErrStopped = errors.New("fsm: loop stopped")
	// ErrDuplicateID: a machine with this id is already in the loop.
	ErrDuplicateID = errors.New("fsm: duplicate machine id")
	// ErrNotTotal: some (state, event) pair has no declared outcome.
	ErrNotTotal = errors.New("fsm: spec is not total")
)
