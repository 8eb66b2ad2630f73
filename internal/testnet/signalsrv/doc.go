// Package signalsrv is the test network's signal server: NetBird's
// signalexchange.SignalExchange service (shared/PROTOCOL.md §4), small but
// correct enough to run for real.
//
//   - ConnectStream needs the metadata header x-wiretrustee-peer-id (a
//     WireGuard public key): FailedPrecondition without it, InvalidArgument if
//     it is not a key. The server answers with the header
//     x-wiretrustee-peer-registered: 1 once the stream is registered, so a
//     client that has seen the header is reachable through Send.
//   - A newer stream with the same id replaces the older one: the older
//     stream ends with Aborted.
//   - The server never reads from a stream. Every message arrives through the
//     unary Send and is routed by remoteKey only; the body is opaque (sealed
//     to the recipient). Send to a peer that is not connected is dropped
//     silently: empty reply, no error.
//   - Messages for one recipient are delivered in the order their Sends
//     returned. A recipient that does not read lets at most queueLimit
//     messages pile up; beyond that new ones are dropped, like a lossy link.
//
// Fault hooks for tests: Stop/Start on the same port, CloseStreams (every
// stream ends with Unavailable), Connected, Sends, Tap.
package signalsrv
