// Package grpchost runs one gRPC server of the test network on 127.0.0.1 so
// that a test can stop it and start it again on the SAME port, as a real
// server restart looks to a client: Stop closes the listener and every
// connection (clients see Unavailable) and waits for the handlers to return;
// Start listens again on the port the first Start got.
//
// Both servers use the keepalive enforcement NetBird's servers use (MinTime
// 10 s, PermitWithoutStream), so a client that pings more often than that is
// told so with GOAWAY, as it would be in production. The signal server also
// pings every client connection every 5 s (SetServerPings), as official
// signal servers do: a connected idle client pays for those wake-ups.
package grpchost
