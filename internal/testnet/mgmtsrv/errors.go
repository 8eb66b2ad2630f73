package mgmtsrv

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrNotConnected: the peer has no open Sync stream.
	ErrNotConnected = errors.New("mgmtsrv: peer has no open sync stream")
	// ErrUnknownPeer: the peer is not registered.
	ErrUnknownPeer = errors.New("mgmtsrv: unknown peer")
	// ErrAddressesExhausted: 100.64.0.0/10 has no free address left.
	ErrAddressesExhausted = errors.New("mgmtsrv: overlay addresses exhausted")
	// ErrQueueFull: a crafted message did not fit in the stream's outbox.
	ErrQueueFull = errors.New("mgmtsrv: sync stream queue full")
)

// The gRPC errors the server answers with (PROTOCOL.md §3). Compare codes
// with status.Code.
var (
	errBadPeerKey     = status.Error(codes.InvalidArgument, "management: wgPubKey is not a WireGuard public key")
	errBadBody        = status.Error(codes.InvalidArgument, "management: invalid request message")
	errNoMeta         = status.Error(codes.FailedPrecondition, "management: peer system meta is required")
	errNoHostname     = status.Error(codes.Internal, "management: peer hostname is empty")
	errNotRegistered  = status.Error(codes.PermissionDenied, "management: peer is not registered")
	errBadSetupKey    = status.Error(codes.NotFound, "management: setup key not found, expired or revoked")
	errNoAddress      = status.Error(codes.Internal, "management: no overlay address left")
	errReplaced       = status.Error(codes.Aborted, "management: sync stream replaced by a newer one of the same peer")
	errClosedTest     = status.Error(codes.Unavailable, "management: sync stream closed by the test network")
	errRemoved        = status.Error(codes.PermissionDenied, "management: peer removed")
	errSlowSyncClient = status.Error(codes.ResourceExhausted, "management: sync stream queue full")
)

// refusal is the error of a registration refused by RefuseRegistrations,
// worded as official management words it.
func refusal(code codes.Code) error {
	if code == codes.FailedPrecondition {
		return status.Error(code, "couldn't add peer: setup key is invalid")
	}
	return status.Error(code, "management: setup key refused by the test network")
}
