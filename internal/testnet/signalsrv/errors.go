package signalsrv

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The gRPC errors the server answers with. Compare codes with status.Code.
var (
	errNoPeerID   = status.Error(codes.FailedPrecondition, "signal: missing "+HeaderPeerID+" header")
	errBadPeerID  = status.Error(codes.InvalidArgument, "signal: "+HeaderPeerID+" is not a WireGuard public key")
	errReplaced   = status.Error(codes.Aborted, "signal: stream replaced by a newer one with the same peer id")
	errClosedTest = status.Error(codes.Unavailable, "signal: stream closed by the test network")
)
