package signalfsm

import (
	"github.com/nbfsm/nbfsm/fsm"
)

// States of the signal link.
const (
	Idle       fsm.State = "idle"
	Running    fsm.State = "running"
	Session    fsm.State = "running.session"
	Connecting fsm.State = "running.session.connecting"
	Connected  fsm.State = "running.session.connected"
	Backoff    fsm.State = "running.backoff"
	Stopped    fsm.State = "stopped"
)

// Events of the signal link. Workers post Up, ConnectFailed and
// StreamClosed; the engine posts Start, Stop, Server and the network events;
// Retry is the backoff timer.
const (
	EvStart         fsm.Event = "start"          // Data: Server
	EvStop          fsm.Event = "stop"           //
	EvServer        fsm.Event = "server"         // Data: Server (from a management config update)
	EvUp            fsm.Event = "up"             // the registered header arrived
	EvConnectFailed fsm.Event = "connect-failed" // Data: error
	EvStreamClosed  fsm.Event = "stream-closed"  // Data: error
	EvRetry         fsm.Event = "retry"          // backoff timer
	EvNetworkUp     fsm.Event = "network-up"     // from the OS network monitor
	EvNetworkDown   fsm.Event = "network-down"   // from the OS network monitor
)

var events = []fsm.Event{EvStart, EvStop, EvServer, EvUp, EvConnectFailed, EvStreamClosed, EvRetry, EvNetworkUp, EvNetworkDown}

// workerEvents arrive from a session's stream worker; outside a session they
// are late (the generation check drops most of them first) and ignored.
var workerEvents = []fsm.Event{EvUp, EvConnectFailed, EvStreamClosed}

// Spec is the signal link machine. Its diagram is docs/diagrams/signal.md.
var Spec = fsm.MustCompile(fsm.Spec[*Link]{
	Kind: Kind,
	Doc: "The signal link: one ConnectStream to the signal server. `connected` is entered only when the server's " +
		"registered header has arrived. Backoff is one timer (exponential, full jitter, 30 s cap); a network-up " +
		"cuts it short. Peers hear of it through the engine's routing table.",
	Initial: Idle,
	Events:  events,
	States: []fsm.StateDef[*Link]{
		{Name: Idle, Doc: "not started",
			Ignore: fsm.Join(workerEvents, []fsm.Event{EvStop, EvRetry, EvNetworkUp, EvNetworkDown})},
		{Name: Running, Initial: Session, Doc: "started: dialing, connected or waiting to retry",
			Ignore: []fsm.Event{EvStart}},
		{Name: Session, Parent: Running, Initial: Connecting, Doc: "one stream attempt: a new generation and one worker",
			Entry: startSession, Exit: endSession, Ignore: []fsm.Event{EvRetry}},
		{Name: Connecting, Parent: Session, Doc: "stream opening, waiting for the registered header",
			Ignore: []fsm.Event{EvNetworkUp}},
		{Name: Connected, Parent: Session, Doc: "stream up: messages flow to peer machines",
			Entry: connected, Ignore: []fsm.Event{EvUp, EvConnectFailed, EvNetworkDown}},
		{Name: Backoff, Parent: Running, Doc: "one timer armed; no dial until it fires or the network comes up",
			Entry: armRetry, Ignore: fsm.Join(workerEvents, []fsm.Event{EvNetworkDown})},
		{Name: Stopped, Doc: "stopped by the engine",
			Ignore: fsm.Join(workerEvents, []fsm.Event{EvStop, EvRetry, EvNetworkUp, EvNetworkDown})},
	},
	Transitions: []fsm.Transition[*Link]{
		{From: Idle, Event: EvStart, To: Running, Action: setServer},
		{From: Idle, Event: EvServer, Action: setServer, Doc: "remember the server"},
		{From: Running, Event: EvStop, To: Stopped},
		{From: Running, Event: EvServer, Guard: serverChanged, To: Session, Action: setServer, Doc: "re-dial the new server now"},
		{From: Running, Event: EvServer, Doc: "same server: nothing to do"},
		{From: Connecting, Event: EvUp, To: Connected},
		{From: Connecting, Event: EvConnectFailed, To: Backoff, Action: recordErr},
		{From: Connecting, Event: EvNetworkDown, To: Backoff, Doc: "no burst of failing dials while the network is down"},
		{From: Session, Event: EvStreamClosed, To: Backoff, Action: recordErr},
		{From: Connected, Event: EvNetworkUp, To: Session, Doc: "the stream may be bound to an address that is gone: re-dial"},
		{From: Backoff, Event: EvRetry, To: Session},
		{From: Backoff, Event: EvNetworkUp, To: Session, Doc: "cut the backoff short"},
		{From: Stopped, Event: EvStart, To: Running, Action: setServer},
		{From: Stopped, Event: EvServer, Action: setServer},
	},
})
