package signal

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
)

// Errors of the client's calls.
var (
	// ErrBadAddr: the signal address is not "host:port".
	ErrBadAddr = errors.New("signal: bad server address")
	// ErrNotRegistered: the server did not confirm the stream with
	// x-wiretrustee-peer-registered: 1.
	ErrNotRegistered = errors.New("signal: stream not registered")
	// ErrRejected: the server refused the call (FailedPrecondition,
	// InvalidArgument, ...).
	ErrRejected = errors.New("signal: request rejected")
	// ErrUnavailable: a transport failure (server unreachable, connection
	// lost, deadline, cancellation).
	ErrUnavailable = errors.New("signal: server unavailable")
	// ErrStreamClosed: the receive stream ended; it wraps the classified
	// cause.
	ErrStreamClosed = errors.New("signal: stream closed")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("signal: client closed")
	// ErrBadMessage: Encode was given a message it cannot send.
	ErrBadMessage = errors.New("signal: bad outbound message")
)

// Errors of Decode, one per reason a received message is dropped. Decode
// also returns nbcrypto.ErrOversize, ErrShortBody, ErrDecrypt and ErrDecode.
var (
	// ErrBadSender: the sender key is not a WireGuard key.
	ErrBadSender = errors.New("signal: bad sender key")
	// ErrUnknownSender: the accept function refused the sender.
	ErrUnknownSender = errors.New("signal: unknown sender")
	// ErrNotForUs: the recipient key is not ours.
	ErrNotForUs = errors.New("signal: message not for us")
	// ErrUnknownType: the body type is not one nbfsm knows.
	ErrUnknownType = errors.New("signal: unknown message type")
	// ErrBadPayload: the payload does not fit the type (ufrag:pwd malformed,
	// candidate unparsable, bad port or session id).
	ErrBadPayload = errors.New("signal: bad payload")
	// ErrIgnored: a valid message nbfsm deliberately ignores (HEARTBEAT,
	// MODE).
	ErrIgnored = errors.New("signal: ignored message type")
)

// IsRetryable reports whether err is a transport-level failure that the same
// call may cure later (ErrUnavailable, ErrStreamClosed without a
// rejection). ErrNotRegistered counts as retryable: it is what a signal
// server that is shutting down or misbehaving answers, and nothing the
// caller can change fixes it but a new attempt.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrRejected), errors.Is(err, ErrClosed),
		errors.Is(err, ErrBadAddr), errors.Is(err, ErrBadMessage):
		return false
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrStreamClosed),
		errors.Is(err, ErrNotRegistered):
		return true
	}
	return false
}

// classify maps a gRPC error of one call to our sentinels, keeping the cause.
// When ctx is done the error also wraps ctx.Err().
func classify(ctx context.Context, what string, err error) error {
	if grpcdial.Transient(ctx, err) {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("signal: %s: %w: %w", what, ErrUnavailable, cerr)
		}
		return fmt.Errorf("signal: %s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("signal: %s: %w: %w", what, ErrRejected, err)
}

// classifyStream turns the error that ended the stream into ErrStreamClosed
// wrapping the classified cause.
func classifyStream(ctx context.Context, err error) error {
	if errors.Is(err, io.EOF) && ctx.Err() == nil {
		return fmt.Errorf("signal: recv: %w: %w", ErrStreamClosed, err)
	}
	return fmt.Errorf("%w: %w", ErrStreamClosed, classify(ctx, "recv", err))
}
