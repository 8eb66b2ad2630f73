package mgmt

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nbfsm/nbfsm/internal/grpcdial"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of calls. Every error a Client returns wraps exactly one of the
// first six, plus the underlying cause; test with errors.Is.
var (
	// ErrBadURL: the management URL is not http(s)://host[:port].
	ErrBadURL = errors.New("mgmt: bad management URL")
	// ErrNotRegistered: the server does not know this peer's key
	// (PermissionDenied). Login again with a setup key.
	ErrNotRegistered = errors.New("mgmt: peer not registered")
	// ErrSetupKeyRejected: the setup key is wrong, expired or revoked
	// (NotFound). Only the user can fix this.
	ErrSetupKeyRejected = errors.New("mgmt: setup key rejected")
	// ErrRequestRejected: the server refused the request for another reason
	// (FailedPrecondition, InvalidArgument, Internal, ...). A request sealed
	// to a server key that changed meanwhile ends here too: fetch the key
	// again before retrying.
	ErrRequestRejected = errors.New("mgmt: request rejected")
	// ErrUnavailable: a transport failure (server unreachable, connection
	// lost, deadline, cancellation). Retrying later is the remedy.
	ErrUnavailable = errors.New("mgmt: server unavailable")
	// ErrStreamClosed: the Sync stream ended; it wraps the cause, which may
	// also match ErrNotRegistered, ErrRequestRejected or ErrUnavailable.
	ErrStreamClosed = errors.New("mgmt: sync stream closed")
	// ErrBadResponse: the server answered with something unusable (a server
	// key that does not parse, a reply that does not open or decode, a login
	// reply without a usable peer address).
	ErrBadResponse = errors.New("mgmt: bad response from server")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("mgmt: client closed")
)

// Reasons for skipping a network map entry or rejecting a map; they appear in
// Skipped.Reason and in wrapped errors of ConvertNetworkMap.
var (
	// ErrBadKey: a peer key is not a WireGuard key (wraps nbcrypto.ErrBadKey).
	ErrBadKey = errors.New("mgmt: bad peer key")
	// ErrBadCIDR: an allowed IP is not a CIDR prefix.
	ErrBadCIDR = errors.New("mgmt: bad allowed IP")
	// ErrOwnKey: the entry is this peer itself.
	ErrOwnKey = errors.New("mgmt: entry is this peer")
	// ErrDuplicatePeer: the key was already listed earlier in the map.
	ErrDuplicatePeer = errors.New("mgmt: duplicate peer")
	// ErrBadPeerConfig: this peer's own config has no usable address.
	ErrBadPeerConfig = errors.New("mgmt: bad peer config")
	// ErrBadHost: a STUN, TURN or signal entry of the config is unusable.
	ErrBadHost = errors.New("mgmt: bad host config")
)

// IsRetryable reports whether err is a transport-level failure, one that the
// same call may cure later (ErrUnavailable, ErrStreamClosed without a
// rejection). Rejections (ErrNotRegistered, ErrSetupKeyRejected,
// ErrRequestRejected), bad responses and a closed client are not retryable in
// this sense: the caller has to change something first (send a setup key,
// ask the user, fetch the server key again).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, ErrNotRegistered), errors.Is(err, ErrSetupKeyRejected),
		errors.Is(err, ErrRequestRejected), errors.Is(err, ErrBadResponse),
		errors.Is(err, ErrClosed), errors.Is(err, ErrBadURL):
		return false
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrStreamClosed):
		return true
	}
	return false
}

// classify maps a gRPC error of one call to our sentinels, keeping the cause.
// what names the call for the message ("login", "get server key", ...).
// When ctx is done, the error also wraps ctx.Err(), so callers can tell their
// own cancellation from a server failure.
func classify(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if grpcdial.Transient(ctx, err) {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("mgmt: %s: %w: %w", what, ErrUnavailable, cerr)
		}
		return fmt.Errorf("mgmt: %s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("mgmt: %s: %w: %w", what, sentinelFor(status.Code(err)), err)
}

// sentinelFor classifies the server's answer (a status that is not
// transient: see grpcdial.Transient).
func sentinelFor(c codes.Code) error {
	switch c {
	case codes.PermissionDenied, codes.Unauthenticated:
		return ErrNotRegistered
	case codes.NotFound:
		return ErrSetupKeyRejected
	default:
		// FailedPrecondition, InvalidArgument, Internal, Unimplemented,
		// OutOfRange, AlreadyExists, DataLoss.
		return ErrRequestRejected
	}
}

// classifyStream turns the error that ended a Sync stream into
// ErrStreamClosed wrapping the classified cause.
func classifyStream(ctx context.Context, err error) error {
	if errors.Is(err, io.EOF) && ctx.Err() == nil {
		return fmt.Errorf("mgmt: sync: %w: %w", ErrStreamClosed, err)
	}
	return fmt.Errorf("%w: %w", ErrStreamClosed, classify(ctx, "sync", err))
}
