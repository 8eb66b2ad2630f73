package grpcdial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The kinds of failure of a call to either NetBird service: the one taxonomy
// of both clients. Each client's own sentinels (sigwire.ErrUnavailable,
// mgmt.ErrSetupKeyRejected, ...) are made with Sentinel and match their kind
// with errors.Is, so a caller may test the precise sentinel or the kind.
var (
	// ErrBadTarget: the server address is unusable.
	ErrBadTarget = errors.New("bad server address")
	// ErrUnavailable: a transport failure (server unreachable, connection
	// lost, deadline, cancellation). Retrying later is the remedy.
	ErrUnavailable = errors.New("server unavailable")
	// ErrRejected: the server answered, and the same call will get the
	// same answer (a refusal, or a reply that cannot be used): the caller
	// has to change something first.
	ErrRejected = errors.New("request rejected")
	// ErrStreamClosed: a stream ended; the error wraps the classified cause.
	ErrStreamClosed = errors.New("stream closed")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client closed")
)

// Sentinel returns a sentinel error with its own message that also matches
// kind (one of the kinds above) with errors.Is.
func Sentinel(msg string, kind error) error { return &sentinel{msg, kind} }

type sentinel struct {
	msg  string
	kind error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.kind }

// Retryable reports whether err is a transport-level failure that the same
// call may cure later: ErrUnavailable, or ErrStreamClosed whose cause is not
// a rejection. Rejections, a closed client and a bad address are not.
func Retryable(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrRejected), errors.Is(err, ErrClosed), errors.Is(err, ErrBadTarget):
		return false
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrStreamClosed)
}

// Errors is one client's use of the taxonomy: the prefix of its messages and
// the sentinels its classified errors wrap.
type Errors struct {
	// Prefix starts every message ("signal", "mgmt").
	Prefix string
	// Unavailable and StreamClosed are the client's sentinels of those kinds.
	Unavailable, StreamClosed error
	// Answer is the client's sentinel for a server's answer with code c (a
	// code that is not transient: see Transient).
	Answer func(c codes.Code) error
	// Stream names the stream's receive in messages ("recv", "sync").
	Stream string
}

// Classify maps a gRPC error of one call (named what in the message) to the
// client's sentinels, keeping the cause. When ctx is done, the error also
// wraps ctx.Err(), so a caller can tell its own cancellation from a server
// failure. A nil err stays nil.
func (t Errors) Classify(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if Transient(ctx, err) {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s: %s: %w: %w", t.Prefix, what, t.Unavailable, cerr)
		}
		return fmt.Errorf("%s: %s: %w: %w", t.Prefix, what, t.Unavailable, err)
	}
	return fmt.Errorf("%s: %s: %w: %w", t.Prefix, what, t.Answer(status.Code(err)), err)
}

// ClassifyStream turns the error that ended a stream read with ctx into the
// client's StreamClosed wrapping the classified cause (a clean EOF while ctx
// is live is the server ending the stream).
func (t Errors) ClassifyStream(ctx context.Context, err error) error {
	if errors.Is(err, io.EOF) && ctx.Err() == nil {
		return fmt.Errorf("%s: %s: %w: %w", t.Prefix, t.Stream, t.StreamClosed, err)
	}
	return fmt.Errorf("%w: %w", t.StreamClosed, t.Classify(ctx, t.Stream, err))
}

// CheckHostPort accepts "host:port" with a non-empty host and a port
// 1–65535, the form both services' addresses take.
func CheckHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
