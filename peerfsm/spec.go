package peerfsm

import (
	"slices"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/relayuse"
)

// States of a peer. Member holds the rows every state of a peer in the
// network map shares (the ignores every state shares are the root's, which
// closed inherits too); its children keep their names (the hierarchy comes
// from StateDef.Parent, not from the name), which are what status
// (`Machine:`) and `netbird events` show.
const (
	Member    fsm.State = "member"
	Parked    fsm.State = "parked"
	Session   fsm.State = "session"
	Offering  fsm.State = "session.offering"
	Waiting   fsm.State = "session.waiting"
	ICE       fsm.State = "session.ice"
	Checking  fsm.State = "session.ice.checking"
	Connected fsm.State = "session.ice.connected"
	Direct    fsm.State = "session.ice.connected.direct"
	Relayed   fsm.State = "session.ice.connected.relayed"
	Backoff   fsm.State = "backoff"
	Idle      fsm.State = "idle"
	Closed    fsm.State = "closed"
)

// Events of a peer. Signal messages (EvOffer … EvGoIdle, Data:
// sigwire.Message) come from the signal stream worker; EvLocalCandidate,
// EvICEConnected and EvICEFailed from the ICE worker; EvSendFailed from a
// send worker; EvPark, EvUnpark, EvUpdate and EvRemove from the engine; the
// rest are timers.
const (
	EvUnpark         fsm.Event = "unpark"          // signal is up and it is this peer's turn
	EvPark           fsm.Event = "park"            // signal went down
	EvSignalUp       fsm.Event = "signal-up"       // signal is up (for peers not parked)
	EvOffer          fsm.Event = "offer"           // Data: sigwire.Message
	EvAnswer         fsm.Event = "answer"          // Data: sigwire.Message
	EvCandidate      fsm.Event = "candidate"       // Data: sigwire.Message
	EvGoIdle         fsm.Event = "go-idle"         // Data: sigwire.Message
	EvResend         fsm.Event = "resend"          // timer: offer not answered yet
	EvLocalCandidate fsm.Event = "local-candidate" // Data: string (candidate text)
	EvICEConnected   fsm.Event = "ice-connected"   // Data: Pair
	EvICEFailed      fsm.Event = "ice-failed"      // Data: error
	EvCheckTimeout   fsm.Event = "check-timeout"   // timer: ICE did not connect in time
	EvPathCheck      fsm.Event = "path-check"      // timer: look at the last receive time
	EvHandshakeDue   fsm.Event = "handshake-due"   // timer: controlled side, no WireGuard handshake from the remote yet
	EvSendFailed     fsm.Event = "send-failed"     // Data: error
	EvRetry          fsm.Event = "retry"           // timer: end of backoff
	EvUpdate         fsm.Event = "update"          // Data: []netip.Prefix (allowed IPs changed)
	EvRemove         fsm.Event = "remove"          // the peer left the network map
	EvNetworkUp      fsm.Event = "network-up"      // the OS network came up (for waiting peers)
	// EvWGFailed: WireGuard refused the peer's configuration (Data: error;
	// from the configuration worker, or raised when it could not be
	// queued). Only a failure of the WireGuard peer the machine has now
	// counts (wgCurrent): one of a peer already removed is late.
	EvWGFailed fsm.Event = "wg-failed"
	// EvRelayFailed: a relay connection could not be bridged to WireGuard
	// (Data: error; from the configuration worker, which sets bridges up in
	// order, or raised when the path did not open); a failure for a
	// WireGuard peer removed since is late (wgStale).
	EvRelayFailed fsm.Event = "relay-failed"
)

var events = []fsm.Event{EvUnpark, EvPark, EvSignalUp, EvOffer, EvAnswer, EvCandidate, EvGoIdle, EvResend,
	EvLocalCandidate, EvICEConnected, EvICEFailed, EvCheckTimeout, EvPathCheck, EvHandshakeDue, EvSendFailed, EvRetry, EvUpdate, EvRemove,
	EvNetworkUp, EvWGFailed, EvRelayFailed,
	relayuse.EvReady, relayuse.EvLost, EvRelayUp, relayuse.EvRemoteOnline, relayuse.EvRemoteOffline} // the relay path's (relay.go)

// iceEvents come from a live ICE agent; outside one they are late.
var iceEvents = []fsm.Event{EvLocalCandidate, EvICEConnected, EvICEFailed, EvCheckTimeout, EvPathCheck, EvHandshakeDue}

// wgEvents report a failed WireGuard configuration or relay bridge; outside
// a session there is no WireGuard peer: they are late.
var wgEvents = []fsm.Event{EvWGFailed, EvRelayFailed}

// Spec is the peer machine. Its diagram is docs/diagrams/peer.md.
var Spec = fsm.MustCompile(fsm.Spec[*Peer]{
	Kind: Kind,
	Doc: "One machine per remote peer of the network map. `parked` holds no goroutine, no timer and no ICE " +
		"agent: a parked peer waits for the engine's `unpark` (signal up, paced). A `session` is one set of local " +
		"ICE credentials and session id: offers are repeated with backoff until answered, every offer is " +
		"answered, candidates flow once both sides have credentials. A connected peer stays connected when " +
		"signal drops; one that loses its path goes to `backoff` if signal is up, to `parked` if not.",
	Initial: Parked,
	Events:  events,
	// Late or not for this state unless a state says so: the ICE agent's
	// and WireGuard's reports outside a session, a timer of another state,
	// a message for another phase, and the relay's reports of the remote's
	// presence (relay.go). Every state, closed too, inherits this.
	Ignore: fsm.Join(iceEvents, wgEvents, []fsm.Event{EvUnpark, EvSignalUp, EvAnswer, EvGoIdle, EvResend, EvRetry, EvNetworkUp,
		relayuse.EvRemoteOnline, relayuse.EvRemoteOffline}),
	States: slices.Concat([]fsm.StateDef[*Peer]{
		{Name: Member, Initial: Parked, Doc: "in the network map: what every state below shares, each listing only what is its own"},
		{Name: Parked, Parent: Member, Doc: "no signal, or waiting for its unpark turn: nothing armed",
			Ignore: []fsm.Event{EvPark}},
		{Name: Session, Parent: Member, Initial: Offering, Doc: "one local ICE session: fresh credentials and session id",
			Entry: newSession, Exit: endSession},
		{Name: Offering, Parent: Session, Doc: "offer sent, resent with backoff until an answer or an offer arrives, MaxOffers in all",
			Entry: sendOffer},
		{Name: Waiting, Parent: Session, Doc: "MaxOffers unanswered: no timer; the remote's offer, a map change for it, network-up or a signal reconnect wakes it"},
		{Name: ICE, Parent: Session, Initial: Checking, Doc: "an ICE agent for (local, remote) credentials",
			Entry: startICE, Exit: stopICE},
		{Name: Checking, Parent: ICE, Doc: "connectivity checks; a deadline is armed", Entry: armCheckDeadline},
		{Name: Connected, Parent: ICE, Initial: Direct, Doc: "WireGuard flows; signal is no longer needed",
			Entry: connected, Exit: leaveConnected},
		{Name: Direct, Parent: Connected, Doc: "WireGuard endpoint = the remote candidate; the ICE agent is closed, the shared socket answers STUN, one lazy path check is armed",
			Entry: holdDirectPath, Exit: releaseDirectPath},
		{Name: Relayed, Parent: Connected, Doc: "WireGuard bridged through the ICE (TURN) connection; the agent stays",
			Entry: holdRelayedPath},
		{Name: Backoff, Parent: Member, Doc: "one timer, then offer again", Entry: armRetry},
		{Name: Idle, Parent: Member, Doc: "the remote went idle (GO_IDLE): no offers until it offers again",
			Ignore: []fsm.Event{EvCandidate}},
		{Name: Closed, Doc: "left the network map", Entry: closed,
			Ignore: []fsm.Event{EvPark, EvOffer, EvCandidate, EvSendFailed, EvUpdate, EvRemove, relayuse.EvReady, relayuse.EvLost, EvRelayUp}}, // what a member handles
	}, relayStates), // the relay path: relay.go
	// The relay path's rows come first: relay.go.
	Transitions: slices.Concat(relayRows, []fsm.Transition[*Peer]{
		// Parked.
		{From: Parked, Event: EvUnpark, To: Session, Action: signalUp},

		// Any session.
		{From: Session, Event: EvPark, To: Parked, Action: signalDown},
		{From: Session, Event: EvGoIdle, To: Idle},

		// Offering.
		{From: Offering, Event: EvResend, Guard: offersSent, To: Waiting, Doc: "the remote is offline: it offers when it comes online"},
		{From: Offering, Event: EvResend, Action: resendOffer},
		{From: Offering, Event: EvAnswer, Guard: hasCredentials, To: ICE, Action: acceptAnswer},
		{From: Offering, Event: EvAnswer, Action: countBad, Doc: "answer without credentials: relay-only peer, not supported yet"},
		{From: Offering, Event: EvOffer, Guard: hasSessionAndCredentials, To: ICE, Action: acceptOffer,
			Doc: "crossing offers: adopt the remote's credentials, answer with ours"},

		// Waiting: our credentials still stand, a late answer is taken.
		{From: Waiting, Event: EvAnswer, Guard: hasCredentials, To: ICE, Action: acceptAnswer},
		{From: Waiting, Event: EvAnswer, Action: countBad},
		{From: Waiting, Event: EvUpdate, To: Offering, Action: offerAgain, Doc: "a map change for it: offer again"},
		{From: Waiting, Event: EvNetworkUp, To: Offering, Action: offerAgain, Doc: "a new network: offer again"},

		// ICE.
		{From: ICE, Event: EvCandidate, Action: addCandidate},
		{From: ICE, Event: EvLocalCandidate, Action: sendCandidate},
		{From: ICE, Event: EvOffer, Guard: sameRemoteSession, Action: answerAgain, Doc: "repeated offer: answered, ignored"},
		{From: ICE, Event: EvAnswer, Guard: sameRemoteSession, Action: nothing, Doc: "repeated answer"},
		{From: ICE, Event: EvAnswer, Guard: hasCredentials, To: ICE, Reenter: true, Action: restartForAnswer,
			Doc: "the remote rebuilt for our offer: new agent, same local credentials"},
		{From: ICE, Event: EvAnswer, Action: countBad},
		{From: ICE, Event: EvICEFailed, Guard: signalIsUp, To: Backoff, Action: recordErr},
		{From: ICE, Event: EvICEFailed, To: Parked, Action: recordErr, Doc: "path lost while signal is down"},
		{From: Checking, Event: EvICEConnected, Guard: pairRelayed, To: Relayed, Action: recordPair},
		{From: Checking, Event: EvICEConnected, To: Direct, Action: recordPair},
		{From: Checking, Event: EvCheckTimeout, Guard: signalIsUp, To: Backoff},
		{From: Checking, Event: EvCheckTimeout, To: Parked},
		{From: Connected, Event: EvICEConnected, Action: recordPair, Doc: "pion re-selected a pair"},
		{From: Connected, Event: EvPark, Action: signalDown, Doc: "WireGuard does not need signal: stay"},
		{From: Connected, Event: EvSignalUp, Action: signalUp},
		{From: Direct, Event: EvHandshakeDue, Action: initiateIfSilent,
			Doc: "controlled side: no handshake from the controller within the grace: set the endpoint and initiate"},
		{From: Direct, Event: EvPathCheck, Guard: pathAlive, Action: rearmPathCheck},
		{From: Direct, Event: EvPathCheck, Guard: pathRoamed, Action: followRoaming,
			Doc: "the remote changed address and WireGuard follows it: so does the path"},
		{From: Direct, Event: EvPathCheck, Guard: unprobed, Action: probePath,
			Doc: "silent for a path timeout: a WireGuard handshake initiation, whose response proves the path (keepalives can be one-sided)"},
		{From: Direct, Event: EvPathCheck, Guard: signalIsUp, To: Backoff, Action: pathLost, Doc: "still silent ProbeTimeout after the probe"},
		{From: Direct, Event: EvPathCheck, To: Parked, Action: pathLost},

		// A failed WireGuard configuration (Effects.SetPeer): the session
		// ends, the error is shown in status, a new one follows backoff.
		{From: ICE, Event: EvWGFailed, Guard: wgCurrentSignalUp, To: Backoff, Action: recordErr,
			Doc: "WireGuard refused the peer's configuration: backoff, the error in status"},
		{From: ICE, Event: EvWGFailed, Guard: wgCurrent, To: Parked, Action: recordErr},
		{From: Session, Event: EvWGFailed, Action: nothing, Doc: "late: for a WireGuard peer already removed"},
		{From: Session, Event: EvRelayFailed, Action: nothing, Doc: "no relay bridged here"},
		{From: Relayed, Event: EvRelayFailed, Guard: wgStale, Action: nothing, Doc: "late: for a WireGuard peer removed since"},
		{From: Relayed, Event: EvRelayFailed, Guard: signalIsUp, To: Backoff, Action: recordErr,
			Doc: "the TURN connection could not be bridged: backoff"},
		{From: Relayed, Event: EvRelayFailed, To: Parked, Action: recordErr},

		// Backoff and idle.
		{From: Backoff, Event: EvRetry, To: Session},
		{From: Backoff, Event: EvPark, To: Parked, Action: signalDown},
		{From: Backoff, Event: EvSignalUp, Action: signalUp},
		{From: Idle, Event: EvPark, Action: signalDown},
		{From: Idle, Event: EvSignalUp, Action: signalUp},

		// Every member (everywhere but closed).
		{From: Member, Event: EvOffer, Guard: hasSessionAndCredentials, To: ICE, Action: acceptOffer,
			Doc: "the remote is ready: answer without waiting for a turn; in a session, a new remote session: new local session, new agent, answer"},
		{From: Member, Event: EvOffer, Action: countBad, Doc: "no session id or credentials: ignored, as official peers do"},
		{From: Member, Event: EvCandidate, Action: bufferCandidate, Doc: "before the exchange: kept for the agent"},
		{From: Member, Event: EvSendFailed, Action: countSendFailure, Doc: "counted; an unanswered offer is resent by its timer"},
		{From: Member, Event: EvUpdate, Action: updateAllowedIPs},
		{From: Member, Event: EvRemove, To: Closed},
	}),
})
