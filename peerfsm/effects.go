package peerfsm

import (
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// Credentials are one side's ICE credentials and session id.
type Credentials struct {
	Ufrag, Pwd string
	SessionID  []byte
}

// Agent is what an ICE agent is started with.
type Agent struct {
	Peer        wgtypes.Key
	Local       Credentials
	Remote      Credentials
	Controlling bool
	// Candidates are remote candidates that arrived before the agent.
	Candidates []string
	// NoTURN: gather no TURN (relay) candidates. Official peers drop them
	// when the NetBird relay is configured here and the remote sent a
	// relayServerAddress: the NetBird relay is the pair's fallback, and a
	// TURN pair nominated before the host pair's check succeeds would hold
	// the session on TURN for good (RELAY.md §5.3).
	NoTURN bool
}

// Pair is the selected candidate pair of a connected agent.
type Pair struct {
	Relayed               bool
	LocalType, RemoteType string // host, srflx, prflx, relay
	Local, Remote         netip.AddrPort
	// Conn is the agent's connection, for a relayed pair: WireGuard is
	// bridged through it.
	Conn net.Conn
	// Latency is the pair's round-trip time when known.
	Latency time.Duration
}

// ICEHandle is a running agent.
type ICEHandle interface {
	// AddRemoteCandidate hands the agent a remote candidate (text).
	AddRemoteCandidate(c string)
	// Stop closes the agent; it posts nothing afterwards. It does not wait.
	Stop()
}

// WGPeer is the WireGuard configuration of one peer.
type WGPeer struct {
	Key        wgtypes.Key
	AllowedIPs []netip.Prefix
	// Endpoint is set by the controlling side of a direct pair; zero: none
	// (the controlled side learns it from the handshake).
	Endpoint netip.AddrPort
	// Relay, when set, bridges WireGuard through this connection.
	Relay     net.Conn
	Keepalive time.Duration
	// KeepRelay keeps the peer's relay bridge open in the background while
	// the endpoint is direct: its datagrams still reach WireGuard, and a
	// fallback reuses it (the NetBird relay path, relay.go).
	KeepRelay bool
	// Probe sends a WireGuard handshake initiation once the peer is set,
	// to the endpoint it then has (a fallback's probe of the relay).
	Probe bool
}

// Poster posts an event to a machine from a worker goroutine; fsm.Sender is
// one.
type Poster interface {
	Post(ev fsm.Event, data any) error
}

// Effects is what a peer machine asks of the world. Calls come from the loop
// goroutine and do not block: sends, ICE and WireGuard configuration run in
// workers that post back.
type Effects interface {
	// NewCredentials returns fresh random ICE credentials and a session id.
	NewCredentials() Credentials
	// Send sends one signal message; a failure is posted as EvSendFailed.
	Send(w fsm.Sender, m sigwire.Message)
	// StartICE starts an agent; it posts EvLocalCandidate, EvICEConnected
	// (Data: Pair) and EvICEFailed through w.
	StartICE(w fsm.Sender, a Agent) ICEHandle
	// SetPeer adds or replaces the WireGuard peer. It returns at once: the
	// configuration, and the relay bridge of p.Relay, are queued behind
	// every earlier one of the interface (so key and allowed IPs are set
	// before the endpoint that starts the handshake), and a failure is
	// posted through r: EvRelayFailed if the relay connection could not be
	// bridged, EvWGFailed otherwise (Data: error). An error returned means
	// nothing was queued (no interface, its queue full or closed; wrapping
	// ErrRelayBridge for a relay that cannot be bridged at all); the
	// machine acts on it as on the event.
	SetPeer(r Poster, p WGPeer) error
	// RemovePeer removes the WireGuard peer and its relay bridge, queued
	// like SetPeer. An error returned means the removal was not queued. A
	// removal that fails later is not posted: the machine has left the
	// state its WireGuard peer belonged to.
	RemovePeer(k wgtypes.Key) error
	// HoldPath answers the remote's STUN binding requests on the shared
	// socket for a direct pair whose agent is closed.
	HoldPath(local Credentials, remote netip.AddrPort) (release func())
	// LastReceive is when a datagram last arrived from remote.
	LastReceive(remote netip.AddrPort) time.Time
	// RelayLastReceive is when a WireGuard datagram last arrived from k
	// through its relay bridge (zero if never, or none is live).
	RelayLastReceive(k wgtypes.Key) time.Time
	// CurrentEndpoint is WireGuard's endpoint for the peer now (zero if
	// unknown). WireGuard follows a remote that changes address (NAT
	// rebinding); a direct path whose pair address fell silent asks it
	// before declaring the path lost.
	CurrentEndpoint(k wgtypes.Key) netip.AddrPort
	// Probe makes WireGuard send the peer a handshake initiation now (no
	// blocking I/O: one datagram). A direct path silent for a whole path
	// timeout may still be alive: wireguard-go's persistent keepalives can
	// be one-sided, since a received keepalive postpones the receiver's
	// own. The remote's handshake response proves the path.
	Probe(k wgtypes.Key)
	// Now is the clock of path checks.
	Now() time.Time
}
