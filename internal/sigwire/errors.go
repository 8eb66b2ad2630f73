package sigwire

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
)

// Errors of the client's calls. Each is of one of grpcdial's kinds
// (errors.Is(err, grpcdial.ErrUnavailable), ...); grpcdial.Retryable tells
// the failures a later attempt may cure.
var (
	// ErrBadAddr: the signal address is not "host:port".
	ErrBadAddr = grpcdial.Sentinel("signal: bad server address", grpcdial.ErrBadTarget)
	// ErrNotRegistered: the server did not confirm the stream with
	// x-wiretrustee-peer-registered: 1. It is of kind ErrUnavailable
	// (retryable): it is what a signal server that is shutting down or
	// misbehaving answers, and nothing the caller can change fixes it but a
	// new attempt.
	ErrNotRegistered = grpcdial.Sentinel("signal: stream not registered", grpcdial.ErrUnavailable)
	// ErrRejected: the server refused the call (FailedPrecondition,
	// InvalidArgument, ...).
	ErrRejected = grpcdial.Sentinel("signal: request rejected", grpcdial.ErrRejected)
	// ErrUnavailable: a transport failure (server unreachable, connection
	// lost, deadline, cancellation).
	ErrUnavailable = grpcdial.Sentinel("signal: server unavailable", grpcdial.ErrUnavailable)
	// ErrStreamClosed: the receive stream ended; it wraps the classified
	// cause.
	ErrStreamClosed = grpcdial.Sentinel("signal: stream closed", grpcdial.ErrStreamClosed)
	// ErrClosed: the Client was closed.
	ErrClosed = grpcdial.Sentinel("signal: client closed", grpcdial.ErrClosed)
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

// errs is the signal client's use of grpcdial's taxonomy: a server's answer is
// a rejection, whatever its code.
var errs = grpcdial.Errors{Prefix: "signal", Unavailable: ErrUnavailable, StreamClosed: ErrStreamClosed,
	Answer: func(codes.Code) error { return ErrRejected }, Stream: "recv"}

// classify maps a gRPC error of one call to our sentinels, keeping the cause.
// When ctx is done the error also wraps ctx.Err().
func classify(ctx context.Context, what string, err error) error {
	return errs.Classify(ctx, what, err)
}

// classifyStream turns the error that ended the stream into ErrStreamClosed
// wrapping the classified cause.
func classifyStream(ctx context.Context, err error) error { return errs.ClassifyStream(ctx, err) }
