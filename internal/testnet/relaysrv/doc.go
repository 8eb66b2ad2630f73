// Package relaysrv is the test network's NetBird relay server: the protocol
// of RELAY.md over WebSocket at /relay (Auth with the v2 token checked
// against the shared secret as management signs it, AuthResponse with the
// instance address, health checks with a reply deadline, Transport
// forwarding with the sender's id, peer-state subscriptions, and a second
// connection with the same id replacing the first), with fault hooks: Stop
// and Start on the same port, DropPeer, and SetHealthChecks(false), after
// which the server neither sends health checks nor checks their replies.
package relaysrv
