package grpchost

import "errors"

var (
	// ErrRunning: Start was called on a host that is already serving.
	ErrRunning = errors.New("grpchost: already running")
	// ErrListen: the port could not be bound (after the bounded retries).
	ErrListen = errors.New("grpchost: cannot listen")
)
