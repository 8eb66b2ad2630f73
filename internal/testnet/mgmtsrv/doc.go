// Package mgmtsrv is the test network's management server: NetBird's
// management.ManagementService (shared/PROTOCOL.md §3) for tests and the demo.
//
// What it does, as NetBird's server does:
//
//   - GetServerKey returns a WireGuard public key that is NEW at every Start;
//     Login and Sync bodies are NaCl boxes to and from that key.
//   - Login: meta missing → FailedPrecondition; meta.hostname empty →
//     Internal; an unknown peer without a setup key → PermissionDenied; an
//     unknown peer with a wrong or revoked setup key → NotFound; with a valid
//     key the peer is registered and gets the next overlay address of
//     100.64.0.0/10 (PeerConfig.address "100.64.0.N/10"). A registered peer
//     logs in without a setup key (one it sends anyway is not checked).
//   - Sync: the request meta is validated like Login's; an unknown peer gets
//     PermissionDenied. The first message is the full state (config, peer
//     config, network map); later messages come whenever membership or
//     topology changes. A newer Sync of the same peer replaces the older
//     stream, which ends with Aborted.
//   - Every network map carries the server's Serial, which rises on every
//     change and is never reset, not even by Stop/Start of the same Server.
//     remotePeers holds every registered peer the topology lets the receiver
//     see (allowedIps "100.64.0.M/32"); remotePeersIsEmpty is set when there
//     is none. Offline peers are not tracked: registered means present.
//   - isHealthy answers Empty.
//
// Fault hooks for tests: Stop/Start on the same port (new server key),
// CloseStreams, RefuseLogins, PushMap/PushSync (crafted messages to one
// peer), SetTopology, SetNetbirdConfig, AddSetupKey/RevokeSetupKey,
// RemovePeer, and the Logins/Syncs counters.
package mgmtsrv
