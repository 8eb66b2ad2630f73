// Package officialpeer is a test double of an official NetBird peer, written
// from shared/PROTOCOL.md §5 (not from nbfsm's code), for the wire
// behaviours that decide whether a tunnel with an official peer holds:
//
//   - every OFFER is answered with its own credentials; its own offers carry
//     a fresh 5-byte sessionId per local session and are repeated with
//     backoff until answered; a repeated remote sessionId is answered and
//     otherwise ignored, a new one rebuilds the agent;
//   - pion ICE (host candidates) on one UDP socket shared with WireGuard
//     (wireguard-go on netstack), demultiplexed per datagram;
//   - on the selected pair, a STUN Binding request every 2 s carrying
//     attribute 0x8100 AFTER FINGERPRINT; 6 s without an answer declares the
//     path dead: the WireGuard endpoint is removed (peer deleted and added
//     again), the agent closed, and a new session offered. Drops counts these;
//   - the ICE-controlling side sets the WireGuard endpoint at once; the
//     controlled side only after 5 s, unless a handshake arrived;
//   - the WireGuard peer exists (without endpoint) before ICE connects, and
//     one packet is queued to the remote when the connection is opened, as
//     the traffic that opens a lazy connection is: wireguard-go's 5 s
//     handshake retry timer then holds back the controlling side's first
//     handshake (PROTOCOL.md §5, "WireGuard handshake roles");
//   - after connecting, a 2-byte "nb" punch to the remote's wgListenPort.
//
// It registers with the test network's management like any peer and talks
// to the test signal server. It is deliberately small: one goroutine reads
// the socket, a mutex guards the connection state, timers are
// time.AfterFunc.
package officialpeer
