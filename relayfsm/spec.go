package relayfsm

import (
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
	"github.com/nbfsm/nbfsm/internal/relayuse"
)

// States of the home relay link: the link shape's (fsm/link), Unconfigured
// and Connected.
const (
	Idle                   = link.Idle
	Running                = link.Running
	Unconfigured fsm.State = "running.unconfigured"
	Session                = link.Session
	Connecting             = link.Connecting
	Connected    fsm.State = "running.session.connected"
	Backoff                = link.Backoff
	Stopped                = link.Stopped
)

// Events of the relay machines. Workers post EvUp, EvConnectFailed,
// EvClosed and EvHealth; the engine posts EvStart, EvStop, EvConfig and the
// network events; peers send EvAcquire and EvRelease; EvRetry, EvSilent and
// EvLinger are timers.
const (
	EvStart                   = link.EvStart     // Data: Config
	EvStop                    = link.EvStop      //
	EvConfig        fsm.Event = "config"         // Data: Config (a refreshed token, new URLs)
	EvUp            fsm.Event = "up"             // Data: Up (authenticated)
	EvConnectFailed fsm.Event = "connect-failed" // Data: error
	EvClosed        fsm.Event = "closed"         // Data: error
	EvHealth        fsm.Event = "health-check"   // the server's health check arrived (answered)
	EvSilent        fsm.Event = "silent"         // timer: no health check within the window
	EvRetry                   = link.EvRetry     // backoff timer
	EvNetworkUp               = link.EvNetworkUp
	EvNetworkDown             = link.EvNetworkDown
	EvAcquire                 = relayuse.EvAcquire // Data: Use (a peer needs a relay)
	EvRelease                 = relayuse.EvRelease // Data: Use (a peer no longer needs it)
	EvForeignClosed fsm.Event = "foreign-gone"     // Data: string (address): a foreign machine closed
	EvPeersOnline   fsm.Event = "peers-online"     // Data: []relay.PeerID (watched remotes now on the relay)
	EvPeersOffline  fsm.Event = "peers-offline"    // Data: []relay.PeerID (watched remotes gone from it)
)

// Events the relay machines send to peer machines (their users): the
// contract of internal/relayuse.
const (
	EvReady         = relayuse.EvReady // Data: Ready
	EvLost          = relayuse.EvLost  // Data: string (instance address)
	EvRemoteOnline  = relayuse.EvRemoteOnline
	EvRemoteOffline = relayuse.EvRemoteOffline
)

var events = []fsm.Event{EvStart, EvStop, EvConfig, EvUp, EvConnectFailed, EvClosed, EvHealth, EvSilent, EvRetry,
	EvNetworkUp, EvNetworkDown, EvAcquire, EvRelease, EvForeignClosed, EvPeersOnline, EvPeersOffline}

// workerEvents arrive from a session's worker; outside a session they are
// late (the generation check drops most of them first) and ignored.
var workerEvents = []fsm.Event{EvUp, EvConnectFailed, EvClosed, EvHealth, EvPeersOnline, EvPeersOffline}

// Spec is the home relay link. Its diagram is docs/diagrams/relay.md.
var Spec = fsm.MustCompile(link.Spec(link.Own[*Link]{
	Kind: Kind,
	Name: "relay",
	Doc: "The home relay link: one authenticated WebSocket connection to the first relay URL of management's " +
		"RelayConfig that accepts the token. `connected` keeps the AuthResponse's instance address and arms one " +
		"health-check deadline, re-armed by every health check (the worker answers them); a silent server is down. " +
		"Backoff is one timer (exponential, full jitter); network-up cuts it short. A refreshed token is used at the " +
		"next connect. Peers acquire and release relays here; foreign relays are child machines (relay-foreign).",
	Events: events,
	Quiet:  fsm.Join(workerEvents, []fsm.Event{EvSilent}),
	Up:     Connected,
	Start: []fsm.Transition[*Link]{
		{Event: EvStart, Guard: configured, To: Running, Action: setConfig},
		{Event: EvStart, To: Unconfigured, Action: setConfig},
	},
	Open: connect,
	Docs: map[fsm.State]string{Connecting: "dialing and authenticating"},
	States: []fsm.StateDef[*Link]{
		{Name: Connected, Parent: Session, Doc: "authenticated: the instance address is known; users are told; one health-check deadline",
			Entry: connected, Exit: disconnected},
		{Name: Unconfigured, Parent: Running, Doc: "no relay URL or no token yet: waits for a config"},
		{Name: Stopped, Doc: "stopped by the engine; foreign relays closed", Entry: stopForeign},
	},
	Transitions: []fsm.Transition[*Link]{
		{From: fsm.Root, Event: EvConfig, Action: setConfig, Doc: "kept for the next connect; an open connection stays"},
		{From: Unconfigured, Event: EvConfig, Guard: configured, To: Session, Action: setConfig},
		{From: Connecting, Event: EvUp, To: Connected, Action: keepConn},
		{From: Connecting, Event: EvConnectFailed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: Session, Event: EvClosed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: Connected, Event: EvHealth, Action: rearmHealth},
		{From: Connected, Event: EvPeersOnline, Action: tellOnline, Doc: "watched remotes came: their users are told"},
		{From: Connected, Event: EvPeersOffline, Action: tellOffline, Doc: "watched remotes left: their users are told"},
		{From: Connected, Event: EvSilent, To: Backoff, Action: recordSilence},

		// Users, in every state: the home relay's are kept (told when it is
		// connected), a foreign one goes to its machine.
		{From: fsm.Root, Event: EvAcquire, Action: acquire},
		{From: fsm.Root, Event: EvRelease, Action: release},
		{From: fsm.Root, Event: EvForeignClosed, Action: reapForeign},
	},
}))
