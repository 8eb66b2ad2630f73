package mgmt

import (
	"context"
	"errors"
	"fmt"

	"github.com/nbfsm/nbfsm/internal/grpcdial"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of calls. Every error a Client returns wraps one of these, plus
// the underlying cause; test with errors.Is. Each is of one
// of grpcdial's kinds (errors.Is(err, grpcdial.ErrRejected), ...);
// grpcdial.Retryable tells the failures a later attempt may cure: the
// rejections (ErrNotRegistered, ErrSetupKeyRejected, ErrRequestRejected,
// ErrBadResponse) are not, as the caller has to change something first (send
// a setup key, ask the user, fetch the server key again).
var (
	// ErrBadURL: the management URL is not http(s)://host[:port].
	ErrBadURL = grpcdial.Sentinel("mgmt: bad management URL", grpcdial.ErrBadTarget)
	// ErrNotRegistered: the server does not know this peer's key
	// (PermissionDenied). Login again with a setup key.
	ErrNotRegistered = grpcdial.Sentinel("mgmt: peer not registered", grpcdial.ErrRejected)
	// ErrSetupKeyRejected: the setup key is wrong, expired, revoked or used
	// up (NotFound; or FailedPrecondition on a Login with a setup key, which
	// official management sends when it finds the key invalid late in the
	// registration: "couldn't add peer: setup key is invalid"). Only the
	// user can fix this.
	ErrSetupKeyRejected = grpcdial.Sentinel("mgmt: setup key rejected", grpcdial.ErrRejected)
	// ErrRequestRejected: the server refused the request for another reason
	// (FailedPrecondition, InvalidArgument, Internal, ...). A request sealed
	// to a server key that changed meanwhile ends here too: fetch the key
	// again before retrying.
	ErrRequestRejected = grpcdial.Sentinel("mgmt: request rejected", grpcdial.ErrRejected)
	// ErrUnavailable: a transport failure (server unreachable, connection
	// lost, deadline, cancellation). Retrying later is the remedy.
	ErrUnavailable = grpcdial.Sentinel("mgmt: server unavailable", grpcdial.ErrUnavailable)
	// ErrStreamClosed: the Sync stream ended; it wraps the cause, which may
	// also match ErrNotRegistered, ErrRequestRejected or ErrUnavailable.
	ErrStreamClosed = grpcdial.Sentinel("mgmt: sync stream closed", grpcdial.ErrStreamClosed)
	// ErrBadResponse: the server answered with something unusable (a server
	// key that does not parse, a reply that does not open or decode, a login
	// reply without a usable peer address).
	ErrBadResponse = grpcdial.Sentinel("mgmt: bad response from server", grpcdial.ErrRejected)
	// ErrClosed: the Client was closed.
	ErrClosed = grpcdial.Sentinel("mgmt: client closed", grpcdial.ErrClosed)
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

// errs is the management client's use of grpcdial's taxonomy.
var errs = grpcdial.Errors{Prefix: "mgmt", Unavailable: ErrUnavailable, StreamClosed: ErrStreamClosed,
	Answer: sentinelFor, Stream: "sync"}

// classify maps a gRPC error of one call to our sentinels, keeping the cause.
// what names the call for the message ("login", "get server key", ...).
// When ctx is done, the error also wraps ctx.Err(), so callers can tell their
// own cancellation from a server failure.
func classify(ctx context.Context, what string, err error) error {
	return errs.Classify(ctx, what, err)
}

// classifyLogin is classify for a Login: with a setup key, FailedPrecondition
// means the key was refused (PROTOCOL.md §3), as NotFound does.
func classifyLogin(ctx context.Context, err error, registering bool) error {
	if registering && !grpcdial.Transient(ctx, err) && status.Code(err) == codes.FailedPrecondition {
		return fmt.Errorf("mgmt: login: %w: %w", ErrSetupKeyRejected, err)
	}
	return classify(ctx, "login", err)
}

// LoginError classifies a gRPC error of a Login call the way Client.Login
// does (registering: the Login carried a setup key). The link machine's
// tests use it to feed the exact errors a server's refusal turns into.
func LoginError(err error, registering bool) error {
	return classifyLogin(context.Background(), err, registering)
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
func classifyStream(ctx context.Context, err error) error { return errs.ClassifyStream(ctx, err) }
