// Package peerfsm is the machine of one remote peer: from parked (no
// signal: nothing armed) through the offer/answer exchange and ICE to a
// WireGuard path, direct or relayed, and back when the path is lost.
//
// The handshake follows what official NetBird peers expect (PROTOCOL.md §5):
// offers are repeated with backoff until answered; every offer is answered
// with this side's own credentials; candidates flow once both sides have
// credentials (earlier ones are kept for the agent); the greater public key
// controls ICE; each local session has a fresh random 5-byte session id; a
// repeated remote session is answered and ignored, a new one rebuilds the
// local session and agent. A connected peer stays connected when signal
// drops. Once a direct pair is selected the agent is closed: the shared
// socket answers the remote's STUN checks and one lazy timer watches the
// path (PathVerdict), so an idle connected peer wakes once per PathTimeout
// instead of every 2 s (twice on the side whose keepalives are postponed by
// the remote's: its silent path is probed with a WireGuard handshake, and
// looked at again ProbeTimeout later).
//
// Workers is the production Effects: pion/ice v2 agents on the shared
// socket's UDP mux (internal/sharedsock), WireGuard peers through
// internal/wgiface, signal sends through the signal link's connection. A
// WireGuard peer exists only while an agent works for the remote (session.ice):
// wireguard-go gives each configured peer two goroutines and its queues.
//
// Diagram: docs/diagrams/peer.md.
package peerfsm
