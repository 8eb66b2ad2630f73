// Package relayuse is the contract between the NetBird relay link machines
// (relayfsm) and the machines that use a relay (peerfsm): the events they
// send each other and what those carry. Neither machine package imports the
// other (DESIGN.md: only the engine connects machines); both import this.
package relayuse

import (
	"net"
	"net/netip"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/relay"
)

// ID is the machine id of the home relay link: users send it EvAcquire and
// EvRelease.
const ID = "relay"

// Events a user sends the home relay link (Data: Use).
const (
	EvAcquire fsm.Event = "acquire" // a peer needs a relay
	EvRelease fsm.Event = "release" // a peer no longer needs it
)

// Events the relay machines send their users.
const (
	EvReady fsm.Event = "relay-ready" // Data: Ready
	EvLost  fsm.Event = "relay-lost"  // Data: string (instance address)
	// The relay reports the user's remote present or gone (Data: string,
	// the relay's instance address).
	EvRemoteOnline  fsm.Event = "remote-online"
	EvRemoteOffline fsm.Event = "remote-offline"
)

// Use names a peer machine (Peer, its machine id) and the relay it needs
// (Addr, an instance address; "" or the home address: the home relay).
// Remote, if set, is the relay id of the peer's remote: while the relay is
// connected and the use holds, the relay watches it (RELAY.md §3.7) and
// the user is told EvRemoteOnline and EvRemoteOffline. IP is the remote's
// relayServerIP, for a foreign relay (RELAY.md §5.2).
type Use struct {
	Peer   string
	Addr   string
	Remote relay.PeerID
	IP     netip.Addr
}

// Ready tells a user that its relay is connected: Addr is the instance
// address, Conn the connection to open its peer on (nil in tests of the
// machines alone).
type Ready struct {
	Addr string
	Conn Opener
}

// Opener opens the virtual connection to a remote peer on a relay
// connection: an in-process call, no I/O (relay.Conn.OpenPeer).
type Opener interface {
	Open(remote relay.PeerID) (net.Conn, error)
}
