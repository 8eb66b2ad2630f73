// Package mgmt is nbfsm's client of the NetBird management service
// (shared/PROTOCOL.md §3): fetching the server key, logging in or registering
// a peer, and receiving its network map over the Sync stream, converted into
// typed, validated Go values.
//
// The client is built for the management link machine (mgmtfsm), which owns
// every decision about time:
//
//   - Every call is ONE attempt. There is no retry and no backoff here; a
//     failed call returns a classified error at once and the machine decides
//     (a backoff state with one timer). [grpcdial.Retryable] tells transport failures
//     from rejected requests.
//   - Every call returns promptly when its context is cancelled.
//   - The client starts no goroutine of its own. A worker owned by the machine
//     calls [SyncStream.Recv] in a blocking loop and posts each [Update] as an
//     event. Close (of the stream or the client) ends a blocked Recv.
//   - A dead connection is noticed by gRPC keepalive (see [KeepaliveTime]),
//     never by a ticker of ours.
//   - A Client is one gRPC channel and Dial does no I/O. Calls fail fast:
//     a server that refuses the connection gives ErrUnavailable at once; one
//     that does not answer at all holds a call until gRPC's connect timeout
//     (20 s) or the ctx, whichever comes first. A kept channel reconnects in
//     the background on gRPC's own backoff (growing to 120 s) and fails
//     calls until it is up; to make the link machine's backoff the only one,
//     Close the Client after a transport failure and Dial a new one for the
//     next attempt.
//
// # Registration
//
// The two-step flow is the caller's: ServerKey, then Login without a setup
// key; [ErrNotRegistered] means the key is unknown, so Login again with the
// setup key; [ErrSetupKeyRejected] means the setup key is wrong, expired or
// revoked and only the user can help (needs-login, no retry storm). The server
// key changes at every server start: fetch it again before every Login and
// every (re)opened Sync.
//
// # Network maps
//
// [ConvertNetworkMap] is pure. It applies these rules:
//
//   - A SyncResponse without NetworkMap is a config-only update (Update.Map
//     is nil); one without netbirdConfig keeps the current config
//     (Update.Config is nil). A Config in an update is partial: what it
//     leaves zero or empty keeps its current value (see [Config]).
//   - NetworkMap.remotePeers is the whole desired peer set. When it is empty,
//     remotePeersIsEmpty is false and the deprecated SyncResponse.remotePeers
//     copy is not empty, the deprecated copy is used (old servers filled only
//     that one); otherwise an empty list is an empty set, exactly like the
//     upstream client, which removes every peer not listed.
//   - NetworkMap.peerConfig absent: the deprecated SyncResponse.peerConfig is
//     used; if both are absent, NetworkMap.Peer is the zero value (keep the
//     current one). A present peerConfig with an unparsable address rejects
//     the whole map (ErrBadPeerConfig): an interface address is not an entry
//     that can be skipped.
//   - A remote peer with a bad key, a bad allowed-IP CIDR, nbfsm's own key,
//     or a key already listed is skipped with a reason in NetworkMap.Skipped;
//     the rest of the map applies. An offline peer that is also online is
//     skipped as a duplicate. Allowed IPs are masked to their canonical form.
//   - FirewallRules (field 8) and firewallRulesIsEmpty (9) become
//     NetworkMap.Firewall: neither means a legacy server (Managed false:
//     allow all); otherwise the valid rules ([ConvertFirewallRule]), and the
//     rest in Firewall.Skipped with ErrBadRule or ErrUnsupportedRule. Meta
//     declares capability 1, so rules carry sourcePrefixes too.
//
// [SyncStream.Recv] drops maps whose Serial is lower than the highest one
// this Client ever delivered, across its streams (equal serials apply); a
// new Client starts afresh, its first map being the server's full state. A stale
// map that came with a config still delivers the config. [Client.ResetSerial]
// forgets the highest serial, for a caller that knows the server's state was
// reset (a new registration).
//
// # Bad input
//
// Undecryptable or undecodable stream messages, rejected maps, skipped
// entries, stale maps and empty updates are counted ([Client.Stats]) and
// logged at most once per 10 s per reason; none of them ends the stream.
package mgmt
