// Package sharedsock owns the one UDP socket a client uses for both
// WireGuard and ICE, as official NetBird peers do (PROTOCOL.md §5): official
// peers send WireGuard packets to exactly the address that won ICE, so
// WireGuard must read the socket ICE used.
//
// Every datagram is sorted by Classify:
//
//	≥ 32 bytes, LE uint32 type 1..4  → wireguard-go (through the Bind)
//	STUN (magic cookie)              → the responder if its USERNAME names a
//	                                   registered ufrag, else the pion
//	                                   UniversalUDPMux shared by all agents
//	"nb" (2 bytes, hole punch)       → dropped, counted
//	anything else                    → dropped, counted
//
// Usage:
//
//	s, _ := sharedsock.Listen(netip.MustParseAddrPort("0.0.0.0:51820"), log)
//	dev := device.NewDevice(tunDev, s.Bind(), logger)   // wgiface does this
//	agent, _ := ice.NewAgent(&ice.AgentConfig{UDPMux: s.UDPMux(), UDPMuxSrflx: s.UDPMux(), ...})
//
// Direct pair: the peer's WireGuard endpoint is the selected remote
// candidate's ip:port. Once selected, the agent can be closed and
// Respond(localUfrag, localPwd, remote) makes the socket answer the remote's
// keepalive Binding requests itself, exactly as pion would, so the remote
// keeps the path while no agent (no goroutine, no timer) runs here.
//
// Relayed (TURN) pair: RelayEndpoint(peer, iceConn) returns an Endpoint with
// a virtual address in RelayPrefix (240.0.0.0/8); configure it as the peer's
// endpoint. Sends go to the ICE connection; what it reads is injected into
// the Bind's second receive function. The agent stays alive for a relay.
//
// Lifetime: wireguard-go closes and reopens its Bind on every Up, Down and
// listen-port change. The socket and the mux outlive that: Bind.Close only
// detaches wireguard-go (a standby reader keeps serving STUN, WireGuard
// datagrams are dropped while the device is down) and Open re-attaches to
// the same socket. The listen port is fixed at Listen (port 0: the kernel
// picks, see LocalAddr); Open with another port fails with ErrPortFixed.
// Only one goroutine reads the socket at any time: wireguard-go's receive
// routine while the Bind is open, the standby reader otherwise.
//
// STUN checks (stuncheck.go) follow RFC 5389 §15.4–15.5 for attributes
// that come after FINGERPRINT, as official peers' Binding requests have
// (0x8100 after FINGERPRINT): pion's FINGERPRINT check would reject them.
//
// Path-loss input: LastReceive(addr) is an atomic per-endpoint time of the
// last WireGuard datagram, stamped by the receive path. The package keeps no
// timers.
//
// Listening on an IPv4 address (or 0.0.0.0) gives UDP4 candidates; an IPv6
// address gives a UDP6 socket. Dual-stack on one socket is not done yet.
package sharedsock
