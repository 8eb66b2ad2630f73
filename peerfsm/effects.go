package peerfsm

import (
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/signal"
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
}

// Effects is what a peer machine asks of the world. Calls come from the loop
// goroutine and do not block: sends and ICE run in workers that post back
// through w; WireGuard configuration is an in-process call.
type Effects interface {
	// NewCredentials returns fresh random ICE credentials and a session id.
	NewCredentials() Credentials
	// Send sends one signal message; a failure is posted as EvSendFailed.
	Send(w fsm.Sender, m signal.Message)
	// StartICE starts an agent; it posts EvLocalCandidate, EvICEConnected
	// (Data: Pair) and EvICEFailed through w.
	StartICE(w fsm.Sender, a Agent) ICEHandle
	// SetPeer adds or replaces the WireGuard peer.
	SetPeer(p WGPeer)
	// RemovePeer removes the WireGuard peer.
	RemovePeer(k wgtypes.Key)
	// HoldPath answers the remote's STUN binding requests on the shared
	// socket for a direct pair whose agent is closed.
	HoldPath(local Credentials, remote netip.AddrPort) (release func())
	// LastReceive is when a datagram last arrived from remote.
	LastReceive(remote netip.AddrPort) time.Time
	// Now is the clock of path checks.
	Now() time.Time
}
