package peerfsm

import "errors"

// Errors the production workers post (as the Data of EvSendFailed,
// EvICEFailed and EvWGFailed), return or log. Check them with errors.Is:
// workers wrap them with context.
var (
	// ErrNoSignal: Workers has no SendFunc; nothing can be sent.
	ErrNoSignal = errors.New("peerfsm: no signal send function")
	// ErrNoSocket: Workers has no shared socket; no ICE agent can run.
	ErrNoSocket = errors.New("peerfsm: no shared socket")
	// ErrICEFailed: the ICE agent reported the Failed state (no pair
	// answered within the failed timeout).
	ErrICEFailed = errors.New("peerfsm: ice failed")
	// ErrAgentClosed: the ICE agent closed although the machine did not
	// stop it (its relayed connection ended, say).
	ErrAgentClosed = errors.New("peerfsm: ice agent closed")
	// ErrWorkersClosed: Workers.Close was called; nothing new starts.
	ErrWorkersClosed = errors.New("peerfsm: workers closed")
	// ErrRelayBridge: a relay connection could not be bridged to WireGuard
	// (Effects.SetPeer; EvRelayFailed).
	ErrRelayBridge = errors.New("peerfsm: relay bridge failed")
	// ErrNoInterface: Workers has no WireGuard interface.
	ErrNoInterface = errors.New("peerfsm: no WireGuard interface")
)
