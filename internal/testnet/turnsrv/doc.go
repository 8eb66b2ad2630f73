// Package turnsrv is the test network's STUN/TURN server: pion/turn on one
// UDP port of 127.0.0.1 (or of the address in Config.Addr), answering STUN
// Binding requests and allocating UDP relays on that same address for one
// static user, with long-term credentials.
//
// The URIs it hands out are the ones the management server puts in
// NetbirdConfig: "stun:127.0.0.1:PORT" and
// "turn:127.0.0.1:PORT?transport=udp".
package turnsrv
